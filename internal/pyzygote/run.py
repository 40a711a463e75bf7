# The part of a Python zygote that turns an interpreter which has finished
# its startup, and is waiting, into a run (see package pyzygote). Both the
# guest's single-use zygote and the host's fork server start with it.
#
# It imports nothing the interpreter's startup did not already import, so
# that sys.modules is what a fresh interpreter's would be.


def _glasshouse_run(argv, env):
    """Runs argv (the interpreter's name, then SCRIPT or -c CODE, then the
    arguments) in this interpreter, with env (NAME=VALUE bytes) as its
    environment, the way a fresh `python3 ARGV...` would. It returns when
    the code returns; SystemExit and interrupts propagate."""
    import os
    import sys

    # The module's globals are about to be cleared for the run's __main__.
    exit_by_sigint = _glasshouse_exit_by_sigint

    # A module seeded at startup would give every run from this zygote the
    # same numbers; a fresh interpreter seeds it from the kernel.
    if "random" in sys.modules:
        sys.modules["random"].seed()

    os.environ.clear()
    for entry in env:
        name, sep, value = entry.partition(b"=")
        if sep and name:
            os.environb[name] = value
    # site derived the user site directory from the zygote's HOME.
    site = sys.modules.get("site")
    if site is not None:
        site.USER_BASE = site.USER_SITE = None
        site.getusersitepackages()

    sys.orig_argv = argv
    namespace = sys.modules["__main__"].__dict__
    # The zygote was itself started with -c: its __main__ is what a -c
    # run's is, but for the zygote's functions.
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
        del source, env
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


def _glasshouse_exit_by_sigint(sys, os):
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
