# The process backend's Python fork server (see zygote_linux.go), after
# pyzygote's run.py. Run as root as `python3 -c <both> HOME_TASKS...`,
# with fd 3 a SOCK_SEQPACKET socket to the backend; HOME_TASKS are the v1
# cgroup tasks files of its own cgroups. It says "R", then serves requests
# until the socket closes. Each request carries five descriptors as
# SCM_RIGHTS (the run's stdin, stdout, stderr, gate and cgroup2 directory)
# and NUL-separated fields: a token, uid, gid (-1: keep root), the working
# directory, the count of the run's v1 tasks files and those files, the
# argument count, the arguments, then NAME=VALUE environment entries.
#
# For each request it moves its thread into the run's v1 cgroups (writing
# "0" to a tasks file moves the thread without the kernel's global
# threadgroup lock), clones a child straight into the run's cgroup2
# directory (clone3 with CLONE_INTO_CGROUP: moving a process into a cgroup2
# takes that lock, whose RCU grace period costs milliseconds and serialises
# every run) and moves back home. The child takes the run's standard
# streams, directory and identity, says "J TOKEN PID" and waits for one
# byte "G" on the gate (the backend describes the process to the collector
# first), then runs the request as pyzygote's _glasshouse_run does and
# exits as an interpreter would. A child that cannot set up says
# "E TOKEN PID REASON" and exits 127. When a child has exited the server
# says "X PID STATUS" (the raw wait status). "E TOKEN 0 REASON" means the
# fork itself failed. A server that cannot move back home exits.
#
# The modules the server imports beyond the interpreter's startup (ctypes,
# _socket) are removed from its children's sys.modules.


def _glasshouse_forkserver():
    import os
    import sys

    startup = set(sys.modules)
    import _signal
    import _socket
    import ctypes

    home = [os.fsencode(p) for p in sys.argv[1:]]
    libc = ctypes.CDLL(None, use_errno=True)
    api = ctypes.pythonapi

    class CloneArgs(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_uint64)
            for name in ("flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack",
                         "stack_size", "tls", "set_tid", "set_tid_size", "cgroup")
        ]

    def write0(paths):
        for path in paths:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def fork_into(tasks, cgroup):
        # What os.fork does around fork(2), with clone3 instead.
        args = CloneArgs(flags=0x200000000, exit_signal=_signal.SIGCHLD, cgroup=cgroup)  # CLONE_INTO_CGROUP
        pid = -1
        write0(tasks)
        try:
            api.PyOS_BeforeFork()
            pid = libc.syscall(435, ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))  # clone3
            if pid == 0:
                api.PyOS_AfterFork_Child()
                return 0
            err = ctypes.get_errno()
            api.PyOS_AfterFork_Parent()
        finally:
            if pid != 0:
                try:
                    write0(home)
                except OSError:
                    os._exit(1)
        if pid < 0:
            raise OSError(err, os.strerror(err))
        return pid

    sock = _socket.socket(fileno=3)

    def reap(signum, frame):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            sock.send(b"X %d %d" % (pid, status))

    _signal.signal(_signal.SIGCHLD, reap)
    sock.send(b"R")
    while True:
        msg, ancillary, _, _ = sock.recvmsg(1 << 17, _socket.CMSG_SPACE(20))
        if not msg:
            os._exit(0)
        fds = []
        for level, kind, data in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += [int.from_bytes(data[i : i + 4], sys.byteorder) for i in range(0, len(data) - 3, 4)]
        fields = msg.split(b"\0")
        pid = -1
        try:
            if len(fds) != 5 or len(fields) < 6:
                raise ValueError("malformed request: %d descriptors, %d fields" % (len(fds), len(fields)))
            ntasks = int(fields[4])
            pid = fork_into(fields[5 : 5 + ntasks], fds[4])
        except Exception as e:
            sock.send(b"E %s 0 %s" % (fields[0], os.fsencode(repr(e))))
        if pid == 0:
            for name in set(sys.modules) - startup:
                del sys.modules[name]
            _glasshouse_child(sock, fields, fds)
        for fd in fds:
            os.close(fd)


def _glasshouse_child(sock, fields, fds):
    import os
    import _signal

    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    token = fields[0]
    try:
        uid, gid, cwd, ntasks = int(fields[1]), int(fields[2]), fields[3], int(fields[4])
        rest = fields[5 + ntasks :]
        argc = int(rest[0])
        argv = [os.fsdecode(a) for a in rest[1 : 1 + argc]]
        env = rest[1 + argc :]
        os.setpgid(0, 0)
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        gate = fds[3]
        os.chdir(cwd)
        if uid >= 0:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
    except BaseException as e:
        sock.send(b"E %s %d %s" % (token, os.getpid(), os.fsencode(repr(e))))
        os._exit(127)
    sock.send(b"J %s %d" % (token, os.getpid()))
    go = os.read(gate, 1)
    sock.detach()
    os.closerange(3, 1 << 20)
    if go != b"G":
        os._exit(127)
    del sock, fields, fds, rest
    _glasshouse_run(argv, env)
    raise SystemExit


_glasshouse_forkserver()
