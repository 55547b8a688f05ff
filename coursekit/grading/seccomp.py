"""A seccomp filter, written by hand in classic BPF, that denies ``memfd_create`` in the sandbox.

An anonymous memory file holds memory that no address-space limit counts
(``RLIMIT_AS`` limits mappings, not files). The sandbox's memory cgroup counts
it, and this filter closes the door before that: ``memfd_create`` fails with
``EPERM``. So does every system call made through another ABI than the
machine's own (32-bit calls on x86-64, x32), whose numbers the filter would
otherwise have to know as well. bubblewrap loads the program (``--seccomp FD``).

The program, for x86-64 (aarch64 differs only in its constants)::

    0  ld  [4]                     ; seccomp_data.arch
    1  jeq #AUDIT_ARCH_X86_64, 3   ; else fall through to 2
    2  ret #ERRNO(EPERM)
    3  ld  [0]                     ; seccomp_data.nr
    4  jge #X32_SYSCALL_BIT, 2     ; x32 system calls -> 7
    5  jeq #__NR_memfd_create, 1   ; -> 7
    6  ret #ALLOW
    7  ret #ERRNO(EPERM)
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

#: machine -> (AUDIT_ARCH_* of its native ABI, number of memfd_create, whether it has the x32 ABI).
ARCHITECTURES = {
    "x86_64": (0xC000003E, 319, True),
    "aarch64": (0xC00000B7, 279, False),
}


def _instruction(code: int, jump_true: int, jump_false: int, k: int) -> bytes:
    """One ``struct sock_filter``: u16 code, u8 jt, u8 jf, u32 k, in the machine's byte order."""
    return struct.pack("=HBBI", code, jump_true, jump_false, k)


def memfd_filter(machine: str | None = None) -> bytes | None:
    """The filter program for ``machine`` (default: this one), or ``None`` where it is not known.

    Args:
        machine: ``platform.machine()``-style name.

    Returns:
        The BPF program as bytes (8 bytes per instruction), ready for ``bwrap --seccomp``.

    Example:
        >>> len(memfd_filter("x86_64")) // 8, memfd_filter("sparc64") is None
        (8, True)
    """
    known = ARCHITECTURES.get(machine or platform.machine())
    if known is None:
        return None
    arch, memfd_create, has_x32 = known
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    program = [
        _instruction(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        _instruction(BPF_JMP_JEQ_K, 1, 0, arch),
        _instruction(BPF_RET_K, 0, 0, deny),
        _instruction(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        # On a machine without x32 no call number reaches the bit, so the test costs nothing.
        _instruction(BPF_JMP_JGE_K, 2, 0, X32_SYSCALL_BIT if has_x32 else 0xFFFFFFFF),
        _instruction(BPF_JMP_JEQ_K, 1, 0, memfd_create),
        _instruction(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        _instruction(BPF_RET_K, 0, 0, deny),
    ]
    return b"".join(program)
