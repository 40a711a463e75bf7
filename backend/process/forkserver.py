# The process backend's Python fork server (see zygote_linux.go), after
# pyzygote's run.py. Run as root as `python3 -c <both>`, with fd 3 a
# SOCK_SEQPACKET socket to the backend. It says "R", then serves requests
# until the socket closes. Each request carries four descriptors as
# SCM_RIGHTS (the run's stdin, stdout, stderr and gate) and NUL-separated
# fields: a token, uid, gid (-1: keep root), the working directory, the
# count of cgroup files to join and those files (written "0" in order),
# the argument count, the arguments, then NAME=VALUE environment entries.
#
# For each request it forks. The child joins the cgroups, takes the run's
# standard streams, directory and identity, says "J TOKEN PID" and waits
# for one byte "G" on the gate (the backend describes the process to the
# collector first), then runs the request as pyzygote's _glasshouse_run
# does and exits as an interpreter would. A child that cannot set up says
# "E TOKEN PID REASON" and exits 127. When a child has exited the server
# says "X PID STATUS" (the raw wait status). "E TOKEN 0 REASON" means the
# fork itself failed.
#
# The server imports nothing the interpreter's startup did not already
# import but the built-in _socket, which its children forget.


def _glasshouse_forkserver():
    import os
    import sys
    import _signal
    import _socket

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
        msg, ancillary, _, _ = sock.recvmsg(1 << 17, _socket.CMSG_SPACE(16))
        if not msg:
            os._exit(0)
        fds = []
        for level, kind, data in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += [int.from_bytes(data[i : i + 4], sys.byteorder) for i in range(0, len(data) - 3, 4)]
        try:
            pid = os.fork()
        except OSError as e:
            pid = -1
            sock.send(b"E %s 0 fork: %s" % (msg.split(b"\0", 1)[0], os.fsencode(str(e))))
        if pid == 0:
            _glasshouse_child(sock, msg, fds)
        for fd in fds:
            os.close(fd)


def _glasshouse_child(sock, msg, fds):
    import os
    import sys
    import _signal

    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    fields = msg.split(b"\0")
    token = fields[0]
    try:
        if len(fds) != 4:
            raise ValueError("want 4 descriptors, got %d" % len(fds))
        uid, gid, cwd, njoin = int(fields[1]), int(fields[2]), fields[3], int(fields[4])
        for path in fields[5 : 5 + njoin]:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        rest = fields[5 + njoin :]
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
    del sock, msg, fds, fields, rest
    sys.modules.pop("_socket", None)
    _glasshouse_run(argv, env)
    raise SystemExit


_glasshouse_forkserver()
