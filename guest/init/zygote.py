# The Python zygote of a snapshot template (see zygote_linux.go). Run as
# `python3 -c <this>` by init, with fd 3 a socket to init and fd 4 open on
# /dev/null. It says it is ready ("R" on fd 3), then blocks until init sends
# one run request and closes the socket. The VM is saved while it blocks;
# every guest restored from the template resumes it here, sets up the run
# as `python3 SCRIPT ARGS...` or `python3 -c CODE ARGS...` with the
# request's environment would see it, and runs the code in this
# interpreter, skipping the interpreter's startup.
#
# Request: NUL-separated fields: "1" if the run has stdin (fd 0 is its
# pipe) or "0" (fd 0 becomes /dev/null), the argument count, the arguments
# (the interpreter's name, SCRIPT or -c CODE, the arguments), then NAME=VALUE
# environment entries.
#
# It imports nothing the interpreter's startup did not already import, so
# that sys.modules is what a fresh interpreter's would be.


def _glasshouse_zygote():
    import os
    import sys

    # The module's globals are about to be cleared for the run's __main__.
    exit_by_sigint = _exit_by_sigint
    os.write(3, b"R")
    chunks = []
    while True:
        chunk = os.read(3, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(3)
    fields = b"".join(chunks).split(b"\0")
    argc = int(fields[1])
    argv = [os.fsdecode(a) for a in fields[2 : 2 + argc]]
    if fields[0] != b"1":
        os.dup2(4, 0)
    os.close(4)

    # A module seeded at startup would give every run from the template
    # the same numbers; a fresh interpreter seeds it from the kernel.
    if "random" in sys.modules:
        sys.modules["random"].seed()

    os.environ.clear()
    for entry in fields[2 + argc :]:
        name, sep, value = entry.partition(b"=")
        if sep and name:
            os.environb[name] = value

    sys.orig_argv = argv
    namespace = sys.modules["__main__"].__dict__
    # This interpreter was itself started with -c: its __main__ is what
    # a -c run's is, but for this function.
    fresh = {k: v for k, v in namespace.items() if k.startswith("__")}
    namespace.clear()
    if argv[1] == "-c":
        filename, source = "<string>", argv[2]
        sys.argv = ["-c"] + argv[3:]
        namespace.update(fresh)
    else:
        # A script named on the command line is resolved against the
        # working directory; its directory leads sys.path.
        filename = os.path.join(os.getcwd(), argv[1])
        sys.argv = argv[1:]
        sys.path[0] = os.path.dirname(filename)
        namespace.update(
            __name__="__main__",
            __doc__=None,
            __package__=None,
            __loader__=sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", filename),
            __spec__=None,
            __annotations__={},
            __builtins__=fresh["__builtins__"],
            __file__=filename,
            __cached__=None,
        )
        try:
            with open(filename, "rb") as f:
                source = f.read()
        except OSError as e:
            sys.stderr.write(
                "%s: can't open file %r: [Errno %d] %s\n" % (sys.executable, filename, e.errno, e.strerror)
            )
            sys.stderr.flush()
            os._exit(2)
    del fresh

    try:
        code = compile(source, filename, "exec", dont_inherit=True)
        del source, chunks, fields
        exec(code, namespace)
    except SystemExit:
        raise
    except BaseException as e:
        # Report it as the interpreter would, without this frame.
        e.__traceback__ = e.__traceback__.tb_next
        sys.excepthook(type(e), e, e.__traceback__)
        if isinstance(e, KeyboardInterrupt):
            exit_by_sigint(sys, os)
        raise SystemExit(1) from None


def _exit_by_sigint(sys, os):
    # An interpreter ended by KeyboardInterrupt finalizes (waits for its
    # threads, runs atexit callbacks, flushes its streams) and then kills
    # itself with SIGINT, so that its parent sees the signal.
    import _signal

    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    sys.modules["atexit"]._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    os.kill(os.getpid(), _signal.SIGINT)


_glasshouse_zygote()
