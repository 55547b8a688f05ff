"""Adversarial submissions for `coursekit grade` (issue 7), built at test time from assignment 1."""
