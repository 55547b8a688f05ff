"""A seccomp filter, written by hand in classic BPF, that denies the sandbox memory no rlimit counts.

``RLIMIT_AS`` limits a process's mappings, not the memory the kernel holds for
it elsewhere: an anonymous memory file (``memfd_create``) and a SysV shared
memory segment (``shmget``, then ``shmat``, fill, ``shmdt``) keep their pages
after they are unmapped, SysV message queues (``msgget``) and POSIX ones
(``mq_open``) keep what is sent to them, and a fresh IPC namespace allows
gigabytes of each. The sandbox's memory cgroup counts these pages where it
exists; this filter refuses the four calls with ``EPERM`` in any case, so
without cgroups they are not a way round the limit either. Other ways the
kernel holds memory for a process (pipe buffers, sockets' queues, inodes on
the scratch tmpfs, which also has an ``nr_inodes`` limit) are counted by the
memory cgroup only. Every system call made through another ABI than the
machine's own (32-bit calls on x86-64, x32) is refused too, as the filter
would otherwise have to know their numbers as well. bubblewrap loads the
program (``--seccomp FD``).

The program, for x86-64 (aarch64 differs only in its constants)::

    0  ld  [4]                     ; seccomp_data.arch
    1  jeq #AUDIT_ARCH_X86_64, 1   ; -> 3
    2  ret #ERRNO(EPERM)
    3  ld  [0]                     ; seccomp_data.nr
    4  jge #X32_SYSCALL_BIT, 5     ; x32 system calls -> 10
    5  jeq #__NR_memfd_create, 4   ; -> 10
    6  jeq #__NR_shmget, 3         ; -> 10
    7  jeq #__NR_msgget, 2         ; -> 10
    8  jeq #__NR_mq_open, 1        ; -> 10
    9  ret #ALLOW
    10 ret #ERRNO(EPERM)
"""

from __future__ import annotations

import errno
import platform
import struct

# BPF instruction classes and modes (linux/bpf_common.h).
BPF_LD_W_ABS = 0x00 | 0x00 | 0x20
BPF_JMP_JEQ_K = 0x05 | 0x10 | 0x00
BPF_JMP_JGE_K = 0x05 | 0x30 | 0x00
BPF_RET_K = 0x06 | 0x00
# seccomp return values (linux/seccomp.h) and the offsets of struct seccomp_data.
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
OFFSET_NR, OFFSET_ARCH = 0, 4
X32_SYSCALL_BIT = 0x40000000
#: the system calls denied, in the order of ``Architecture.denied``.
DENIED_CALLS = ("memfd_create", "shmget", "msgget", "mq_open")

#: machine -> (AUDIT_ARCH_* of its native ABI, numbers of :data:`DENIED_CALLS`, whether it has the x32 ABI).
ARCHITECTURES = {
    "x86_64": (0xC000003E, (319, 29, 68, 240), True),
    "aarch64": (0xC00000B7, (279, 194, 186, 180), False),
}


def _instruction(code: int, jump_true: int, jump_false: int, k: int) -> bytes:
    """One ``struct sock_filter``: u16 code, u8 jt, u8 jf, u32 k, in the machine's byte order."""
    return struct.pack("=HBBI", code, jump_true, jump_false, k)


def sandbox_filter(machine: str | None = None) -> bytes | None:
    """The filter program for ``machine`` (default: this one), or ``None`` where it is not known.

    Args:
        machine: ``platform.machine()``-style name.

    Returns:
        The BPF program as bytes (8 bytes per instruction), ready for ``bwrap --seccomp``.

    Example:
        >>> len(sandbox_filter("x86_64")) // 8, sandbox_filter("sparc64") is None
        (11, True)
    """
    known = ARCHITECTURES.get(machine or platform.machine())
    if known is None:
        return None
    arch, denied, has_x32 = known
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    program = [
        _instruction(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        _instruction(BPF_JMP_JEQ_K, 1, 0, arch),
        _instruction(BPF_RET_K, 0, 0, deny),
        _instruction(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        # On a machine without x32 no call number reaches the bit, so the test costs nothing.
        _instruction(BPF_JMP_JGE_K, len(denied) + 1, 0, X32_SYSCALL_BIT if has_x32 else 0xFFFFFFFF),
    ]
    # Each comparison jumps over the ones after it and the ALLOW to the final deny.
    program += [_instruction(BPF_JMP_JEQ_K, len(denied) - i, 0, number) for i, number in enumerate(denied)]
    program += [_instruction(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW), _instruction(BPF_RET_K, 0, 0, deny)]
    return b"".join(program)
