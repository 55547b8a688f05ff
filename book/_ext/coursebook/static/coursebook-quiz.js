/* Self-check quizzes of the coursekit book: every click gets feedback, no server needed.
 * Each .ck-quiz element is wired on its own, so several quizzes on a page never interact.
 * The markup (answers and explanations included) is written by book/_ext/coursebook/quiz.py. */
(function () {
  "use strict";

  function say(quiz, text, good) {
    var feedback = quiz.querySelector(".ck-quiz-feedback");
    feedback.textContent = text;
    feedback.classList.toggle("ck-good", good);
    feedback.classList.toggle("ck-bad", !good);
  }

  // Text of an element for the feedback line, with typeset maths put back as its TeX source.
  function plain(element) {
    var clone = element.cloneNode(true);
    var originals = element.querySelectorAll("mjx-container");
    var copies = clone.querySelectorAll("mjx-container");
    var items = [];
    if (window.MathJax && MathJax.startup && MathJax.startup.document &&
        MathJax.startup.document.getMathItemsWithin) {
      items = Array.from(MathJax.startup.document.getMathItemsWithin(element));
    }
    copies.forEach(function (copy, index) {
      var item = items.find(function (candidate) { return candidate.typesetRoot === originals[index]; });
      copy.replaceWith(document.createTextNode(item ? item.math.trim() : copy.textContent));
    });
    return clone.textContent.replace(/\s+/g, " ").trim();
  }

  function wireChoice(quiz) {
    quiz.querySelectorAll(".ck-quiz-option").forEach(function (button) {
      button.addEventListener("click", function () {
        var correct = button.getAttribute("data-correct") === "true";
        var explain = document.getElementById(button.getAttribute("aria-describedby"));
        button.classList.remove("ck-correct", "ck-incorrect");
        button.classList.add(correct ? "ck-correct" : "ck-incorrect");
        button.setAttribute("aria-pressed", "true");
        if (explain) { explain.hidden = false; }
        say(quiz, (correct ? "Correct: " : "Incorrect: ") + plain(button) + ". " +
            (explain ? plain(explain).replace(/^(Correct|Incorrect)\.\s*/, "") : ""), correct);
      });
    });
  }

  function wireMatch(quiz) {
    var chosen = null;
    var terms = quiz.querySelectorAll(".ck-quiz-term");
    var definitions = quiz.querySelectorAll(".ck-quiz-definition");

    function select(term) {
      terms.forEach(function (t) {
        t.classList.toggle("ck-selected", t === term);
        t.setAttribute("aria-pressed", t === term ? "true" : "false");
      });
      chosen = term;
    }

    terms.forEach(function (term) {
      term.addEventListener("click", function () {
        if (term.classList.contains("ck-matched")) {
          say(quiz, "Already matched: " + plain(term) + ".", true);
          return;
        }
        select(term);
        say(quiz, "Now click the definition of " + plain(term) + ".", true);
      });
    });

    definitions.forEach(function (definition) {
      definition.addEventListener("click", function () {
        definitions.forEach(function (d) { d.classList.remove("ck-incorrect"); });
        if (chosen === null) {
          say(quiz, "First click a term, then the definition that belongs to it.", false);
          return;
        }
        if (definition.getAttribute("data-pair") === chosen.getAttribute("data-pair")) {
          chosen.classList.add("ck-matched", "ck-correct");
          definition.classList.add("ck-matched", "ck-correct");
          var left = quiz.querySelectorAll(".ck-quiz-term:not(.ck-matched)").length;
          say(quiz, "Correct: " + plain(chosen) + " \u2014 " + plain(definition) + "." +
              (left === 0 ? " All pairs matched." : " " + left + " left."), true);
          select(null);
        } else {
          definition.classList.add("ck-incorrect");
          say(quiz, "Incorrect: that definition does not describe " + plain(chosen) + ". Try another.", false);
        }
      });
    });
  }

  function wireAll() {
    document.querySelectorAll(".ck-quiz").forEach(function (quiz) {
      if (quiz.getAttribute("data-quiz-type") === "match") { wireMatch(quiz); } else { wireChoice(quiz); }
      quiz.setAttribute("data-quiz-ready", "true");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", wireAll);
  } else {
    wireAll();
  }
})();
