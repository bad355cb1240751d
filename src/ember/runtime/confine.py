"""The last steps into an instance's sandbox, taken inside the instance before user code.

The bubblewrap sandbox (``ember.sandbox.bubblewrap``) gives the zygote of a function version
its view of the host: system directories, the runtime, the version's code and layers, all
read-only. What must differ between two instances of the same version is done here, in the
forked child, while it still holds the few capabilities the zygote kept:

1. a mount namespace of its own, with a private ``/tmp`` and ``/dev/shm`` (tmpfs, capped
   at ``tmp_mb``), so instances never see each other's files;
2. a user id of its own (one per live instance), taken on ``init``, so instances cannot
   signal, trace or read one another, and the host's root-owned files are out of reach;
   every capability is dropped with the switch from root, and ``no_new_privs`` keeps
   them dropped.

The preloader of a version with dependencies (``ember.runtime.preload``) takes both steps
itself, as an instance would, before it imports them; the instances forked from it are
then confined already (its mounts, its user id, no capability) and take neither.

A leaf module: standard library only (``ctypes`` through ``ember.runtime.process``).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from ember.runtime.process import libc
from ember.runtime.spec import Confinement

__all__ = ["Confinement", "drop", "enter"]

_CLONE_NEWNS = 0x00020000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PRIVATE_MOUNTS = ("/tmp", "/dev/shm")
SECRETS_DIR = "/run/secrets"  # memory only, and this instance's only


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: bytes | None, target: bytes, fstype: bytes | None, flags: int,
           data: bytes | None) -> int:
    function = libc().mount
    function.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                         ctypes.c_char_p]
    return int(function(source, target, fstype, flags, data))


def enter(confinement: Confinement) -> None:
    """Take the instance's own mounts; raises ``OSError`` when it cannot (the instance must
    then not run: the caller exits). The user id is taken later (``drop``)."""
    c = libc()
    _check(c.unshare(ctypes.c_int(_CLONE_NEWNS)), "unshare(CLONE_NEWNS)")
    # Mounts made from here on stay in this instance's namespace.
    _check(_mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
    options = f"size={confinement.tmp_mb}m,mode=1777,nr_inodes=65536".encode()
    for target in PRIVATE_MOUNTS:
        if os.path.isdir(target):
            # What the sandbox bound under it (the runtime, when it lives in /tmp) is
            # held open, covered by the new tmpfs, and bound again on top of it.
            kept = _hold(_mounts_under(target))
            try:
                _check(_mount(b"tmpfs", target.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV,
                              options), f"mount tmpfs {target}")
                for path, descriptor in kept:
                    _bind_again(path, descriptor)
            finally:
                for _, descriptor in kept:
                    os.close(descriptor)
    if os.path.isdir(SECRETS_DIR):
        _check(_mount(b"tmpfs", SECRETS_DIR.encode(), b"tmpfs",
                      _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, b"size=1m,mode=1777,nr_inodes=256"),
               f"mount tmpfs {SECRETS_DIR}")


def _mounts_under(directory: str) -> list[str]:
    """The mount points below ``directory``, outermost first (``/proc/self/mountinfo``)."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        for line in mounts:
            # Field 5 is the mount point, with spaces and such escaped as octal.
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(directory.rstrip("/") + "/"):
                found.append(point)
    outermost: list[str] = []
    for point in sorted(set(found), key=lambda p: p.count("/")):
        # One inside another comes with it (the bind is recursive).
        if not any(point.startswith(kept + "/") for kept in outermost):
            outermost.append(point)
    return outermost


def _hold(paths: list[str]) -> list[tuple[str, int]]:
    return [(path, os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW))
            for path in paths if os.path.isdir(path)]


def _bind_again(path: str, descriptor: int) -> None:
    """Bind the directory held by ``descriptor`` at ``path`` again, read-only."""
    for directory in [*reversed(Path(path).parents), Path(path)]:
        if not directory.is_dir():
            directory.mkdir()
            os.chmod(directory, 0o755)  # whatever the umask: the instance's user walks it
    source = f"/proc/self/fd/{descriptor}".encode()
    _check(_mount(source, path.encode(), None, _MS_BIND | _MS_REC, None), f"bind {path}")
    _check(_mount(None, path.encode(), None,
                  _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None),
           f"remount {path} read-only")


def drop(confinement: Confinement) -> None:
    """Become the instance's own user, for good; raises ``OSError`` when it cannot.

    Called on ``init``, once the server has set the limits from outside (setting another
    user's rlimits takes a capability the server may not have).
    """
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
    # The bounding set too, so that nothing could ever give a capability back (the zygote
    # keeps CAP_SETPCAP for this). Past the last capability the kernel knows: EINVAL.
    for capability in range(64):
        if libc().prctl(ctypes.c_int(_PR_CAPBSET_DROP), ctypes.c_ulong(capability),
                        ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
            break
    os.setgroups([])
    os.setresgid(confinement.uid, confinement.uid, confinement.uid)
    # From root to another user: the kernel clears the permitted and effective sets here;
    # the inheritable set is emptied next.
    os.setresuid(confinement.uid, confinement.uid, confinement.uid)
    _clear_capabilities()


def _prctl(option: int, value: int, what: str) -> None:
    _check(libc().prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0),
                        ctypes.c_ulong(0), ctypes.c_ulong(0)), f"prctl({what})")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _clear_capabilities() -> None:
    """Empty every capability set of this process (``capset`` with nothing)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(libc().capset(ctypes.byref(header), data), "capset")
