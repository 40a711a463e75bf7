# The Python zygote of a snapshot template (see zygote_linux.go), after
# pyzygote's run.py. Run as `python3 -c <both>` by init, with fd 3 a socket
# to init and fd 4 open on /dev/null. It says it is ready ("R" on fd 3),
# then blocks until init sends one run request and closes the socket. The
# VM is saved while it blocks; every guest restored from the template
# resumes it here and runs the request in this interpreter, skipping the
# interpreter's startup.
#
# Request: NUL-separated fields: "1" if the run has stdin (fd 0 is its
# pipe) or "0" (fd 0 becomes /dev/null), the argument count, the arguments
# (the interpreter's name, SCRIPT or -c CODE, the arguments), then NAME=VALUE
# environment entries.


def _glasshouse_zygote():
    import os

    os.write(3, b"R")
    chunks = []
    while True:
        chunk = os.read(3, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(3)
    fields = b"".join(chunks).split(b"\0")
    del chunks
    argc = int(fields[1])
    argv = [os.fsdecode(a) for a in fields[2 : 2 + argc]]
    if fields[0] != b"1":
        os.dup2(4, 0)
    os.close(4)
    _glasshouse_run(argv, fields[2 + argc :])


_glasshouse_zygote()
