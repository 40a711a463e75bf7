/*
 * Tester programs for the collector's golden end-to-end tests. Built
 * statically (gcc -static) so that a run does nothing the scenario does not
 * ask for: no dynamic loader, no libc lookups.
 *
 *   tester chain N       exec itself N more times, then exit 0
 *   tester fork N        fork N children that exit with i % 7, reap them
 *   tester open          open relative to the cwd and to a directory fd
 *   tester fsops         rename, unlink, symlink, link, mkdir, rmdir, chmod, truncate,
 *                        mknod (a file and a FIFO), and an open_by_handle_at that
 *                        an unprivileged user is refused
 *   tester tcp PORT      listen on 127.0.0.1:PORT, connect to it, accept
 *   tester udp PORT      sendto 127.0.0.1:PORT and [::1]:PORT, then a connected send
 *   tester execfail      exec a missing and a non-executable file, exit 3
 *   tester daemon        leave a grandchild that outlives its parent
 *   tester connect PORT  connect to 127.0.0.1:PORT; exit 0 or print the errno name
 *   tester noise DIR     loop forever doing file, process and socket work in DIR
 *   tester spin N        N open/close pairs of /dev/null (benchmarks)
 *   tester churn N       create 256 files in the cwd, then N open/close pairs cycling
 *                        over them: every open misses the kernel's open cache
 *   tester repeats       open files again and again through a rename (of the file and
 *                        of its directory), a change of flags, a file replaced under
 *                        its name, more files than the open cache holds, and a thread
 *                        that exits
 *   tester holdopen N    N open/close pairs of /dev/null, print "ready", then sleep
 *   tester forkexec N    N fork+exec of "tester chain 0" (benchmarks)
 *   tester iouring       create an io_uring instance (its operations bypass syscalls)
 *   tester mountns       in a mount namespace of its own (and a user namespace when
 *                        not root), mount a tmpfs on ./m and create m/f in it
 *   tester int80         make a 32-bit open() through int 0x80
 *   tester paths         create files under names of 31 to 255 bytes, 100
 *                        directories deep, and 17 directories of 250 bytes deep
 *   tester nbconnect P Q non-blocking connects to 127.0.0.1:P (listening) and :Q (closed)
 *   tester reconnect     a non-blocking connect whose SYN is dropped (full accept
 *                        queue), connect again (EALREADY), then close
 *   tester flipconnect P Q N
 *                        N or more connects to one address whose port another thread
 *                        keeps flipping between P and Q: only the kernel's copy says
 *                        which; prints "connected C refused R"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *self;

static void must(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "tester: %s: %s\n", what, strerror(errno));
		exit(100);
	}
}

static struct sockaddr_in v4(const char *ip, int port)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static int chain(int n)
{
	if (n <= 0)
		return 0;
	char buf[16];
	snprintf(buf, sizeof(buf), "%d", n - 1);
	char *argv[] = {(char *)self, "chain", buf, NULL};
	execv(self, argv);
	must(0, "execv");
	return 1;
}

static int forkn(int n)
{
	for (int i = 0; i < n; i++) {
		pid_t p = fork();
		must(p >= 0, "fork");
		if (p == 0)
			_exit(i % 7);
	}
	while (wait(NULL) > 0)
		;
	return 0;
}

static int opens(void)
{
	must(mkdir("sub", 0755) == 0, "mkdir sub");
	int fd = open("rel.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
	must(fd >= 0, "open rel.txt");
	must(write(fd, "x", 1) == 1, "write");
	close(fd);
	int dir = open("sub", O_RDONLY | O_DIRECTORY);
	must(dir >= 0, "open sub");
	fd = openat(dir, "f.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
	must(fd >= 0, "openat f.txt");
	close(fd);
	must(openat(dir, "missing.txt", O_RDONLY) < 0, "openat missing.txt");
	fd = open("rel.txt", O_RDONLY);
	must(fd >= 0, "reopen rel.txt");
	close(fd);
	fd = openat(AT_FDCWD, "sub/../rel.txt", O_RDWR);
	must(fd >= 0, "open sub/../rel.txt");
	close(fd);
	fd = open("/dev/null", O_WRONLY | O_CREAT, 0644);
	must(fd >= 0, "open /dev/null");
	close(fd);
	close(dir);
	return 0;
}

static int fsops(void)
{
	int fd = open("a", O_CREAT | O_WRONLY, 0644);
	must(fd >= 0, "create a");
	close(fd);
	must(rename("a", "b") == 0, "rename");
	must(symlink("b", "c") == 0, "symlink");
	must(unlink("c") == 0, "unlink c");
	must(link("b", "d") == 0, "link");
	must(unlink("d") == 0, "unlink d");
	must(mkdir("dir", 0755) == 0, "mkdir");
	must(rmdir("dir") == 0, "rmdir");
	must(chmod("b", 0600) == 0, "chmod");
	must(truncate("b", 0) == 0, "truncate");
	must(unlink("nonexistent") < 0, "unlink nonexistent");
	must(renameat(AT_FDCWD, "b", AT_FDCWD, "e") == 0, "renameat");
	/* Files made without an open: the raw mknod call (glibc's goes
	 * through mknodat), a FIFO, and one that exists already. */
	must(syscall(SYS_mknod, "node", S_IFREG | 0644, 0) == 0, "mknod");
	must(mknodat(AT_FDCWD, "fifo", S_IFIFO | 0644, 0) == 0, "mknodat");
	must(mknodat(AT_FDCWD, "fifo", S_IFIFO | 0644, 0) < 0 && errno == EEXIST, "mknodat existing");
	must(unlink("node") == 0 && unlink("fifo") == 0, "unlink nodes");
	/* Opening a file by its handle skips path lookup; without
	 * CAP_DAC_READ_SEARCH the kernel refuses. */
	struct file_handle *fh = malloc(sizeof(*fh) + MAX_HANDLE_SZ);
	int mount_id;
	must(fh != NULL, "malloc");
	fh->handle_bytes = MAX_HANDLE_SZ;
	must(name_to_handle_at(AT_FDCWD, "e", fh, &mount_id, 0) == 0, "name_to_handle_at");
	int hfd = open_by_handle_at(AT_FDCWD, fh, O_RDONLY);
	if (hfd >= 0)
		close(hfd);
	else
		must(errno == EPERM, "open_by_handle_at refused");
	free(fh);
	must(unlinkat(AT_FDCWD, "e", 0) == 0, "unlinkat");
	return 0;
}

static int tcp(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	must(s >= 0, "socket");
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = v4("127.0.0.1", port);
	must(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0, "bind");
	must(listen(s, 4) == 0, "listen");
	int c = socket(AF_INET, SOCK_STREAM, 0);
	must(c >= 0, "socket");
	must(connect(c, (struct sockaddr *)&a, sizeof(a)) == 0, "connect");
	int x = accept(s, NULL, NULL);
	must(x >= 0, "accept");
	close(x);
	close(c);
	close(s);
	return 0;
}

static int udp(int port)
{
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	must(u >= 0, "socket");
	struct sockaddr_in a = v4("127.0.0.1", port);
	must(sendto(u, "ping", 4, 0, (struct sockaddr *)&a, sizeof(a)) == 4, "sendto");
	int u6 = socket(AF_INET6, SOCK_DGRAM, 0);
	if (u6 >= 0) {
		struct sockaddr_in6 b;
		memset(&b, 0, sizeof(b));
		b.sin6_family = AF_INET6;
		b.sin6_port = htons(port);
		b.sin6_addr = in6addr_loopback;
		must(sendto(u6, "ping", 4, 0, (struct sockaddr *)&b, sizeof(b)) == 4, "sendto6");
		close(u6);
	}
	must(connect(u, (struct sockaddr *)&a, sizeof(a)) == 0, "connect");
	must(send(u, "pong", 4, 0) == 4, "send");
	close(u);
	return 0;
}

static int execfail(void)
{
	char *argv[] = {"prog", NULL};
	must(execv("/nonexistent/prog", argv) < 0, "exec missing");
	int fd = open("notexec", O_CREAT | O_WRONLY, 0644);
	must(fd >= 0, "create notexec");
	close(fd);
	must(execv("./notexec", argv) < 0, "exec notexec");
	return 3;
}

static int daemonize(void)
{
	pid_t p = fork();
	must(p >= 0, "fork");
	if (p == 0) {
		setsid();
		pid_t q = fork();
		if (q == 0) {
			struct timespec ts = {0, 300 * 1000 * 1000};
			nanosleep(&ts, NULL);
			int fd = open("daemon.out", O_CREAT | O_WRONLY | O_TRUNC, 0644);
			if (fd >= 0) {
				write(fd, "late\n", 5);
				close(fd);
			}
			_exit(0);
		}
		_exit(q > 0 ? 0 : 1);
	}
	waitpid(p, NULL, 0);
	return 0;
}

static int connectto(int port)
{
	int c = socket(AF_INET, SOCK_STREAM, 0);
	must(c >= 0, "socket");
	struct sockaddr_in a = v4("127.0.0.1", port);
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) != 0) {
		printf("%s\n", errno == EPERM ? "EPERM" : strerror(errno));
		return 1;
	}
	printf("connected\n");
	return 0;
}

static int noise(const char *dir)
{
	must(chdir(dir) == 0, "chdir");
	for (;;) {
		int fd = open("noise.txt", O_CREAT | O_WRONLY, 0644);
		if (fd >= 0)
			close(fd);
		unlink("noise.txt");
		pid_t p = fork();
		if (p == 0)
			_exit(0);
		if (p > 0)
			waitpid(p, NULL, 0);
		int u = socket(AF_INET, SOCK_DGRAM, 0);
		struct sockaddr_in a = v4("127.0.0.1", 9);
		sendto(u, "n", 1, 0, (struct sockaddr *)&a, sizeof(a));
		close(u);
	}
	return 0;
}

static int spin(long n)
{
	for (long i = 0; i < n; i++) {
		int fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			close(fd);
	}
	return 0;
}

static int churn(long n)
{
	char name[32];
	for (int i = 0; i < 256; i++) {
		snprintf(name, sizeof name, "churn-%d", i);
		int fd = creat(name, 0644);
		must(fd >= 0, name);
		close(fd);
	}
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof name, "churn-%ld", i % 256);
		int fd = open(name, O_RDONLY);
		if (fd >= 0)
			close(fd);
	}
	return 0;
}

static void openn(const char *path, int flags, int n)
{
	for (int i = 0; i < n; i++) {
		int fd = open(path, flags, 0644);
		must(fd >= 0, path);
		close(fd);
	}
}

static void *open_c(void *arg)
{
	openn("c", O_RDONLY, 4);
	return arg;
}

/* What the kernel's open cache counts must come out exact. */
static int repeats(void)
{
	openn("a", O_WRONLY | O_CREAT, 1);
	openn("a", O_RDONLY, 5);
	must(rename("a", "b") == 0, "rename");
	openn("b", O_RDONLY, 3);
	openn("b", O_WRONLY, 2);
	must(unlink("b") == 0, "unlink");
	openn("b", O_RDWR | O_CREAT, 1);
	openn("b", O_RDONLY, 2);
	/* Its directory renamed: same dentry, same name, another path. */
	must(mkdir("e", 0755) == 0, "mkdir");
	openn("e/x", O_WRONLY | O_CREAT, 1);
	openn("e/x", O_RDONLY, 2);
	must(rename("e", "e2") == 0, "rename");
	openn("e2/x", O_RDONLY, 3);
	must(mkdir("d", 0755) == 0, "mkdir");
	char name[32];
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof name, "d/f%d", i);
		openn(name, O_WRONLY | O_CREAT, 1);
	}
	/* More files than the cache holds, each opened three times in a row
	 * (a miss, the open that takes a slot, a repeat): the slots change
	 * hands with repeats to carry. Then each once, three rounds over:
	 * never twice in a row in its slot, so never cached. */
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 20; i++) {
			snprintf(name, sizeof name, "d/f%d", i);
			openn(name, O_RDONLY, 3);
		}
	}
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 20; i++) {
			snprintf(name, sizeof name, "d/f%d", i);
			openn(name, O_RDONLY | O_CLOEXEC, 1);
		}
	}
	openn("c", O_WRONLY | O_CREAT, 1);
	pthread_t t;
	must(pthread_create(&t, NULL, open_c, NULL) == 0, "pthread_create");
	pthread_join(t, NULL);
	return 0;
}

static int holdopen(long n)
{
	spin(n);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
	return 0;
}

static int forkexec(int n)
{
	for (int i = 0; i < n; i++) {
		pid_t p = fork();
		must(p >= 0, "fork");
		if (p == 0) {
			char *argv[] = {(char *)self, "chain", "0", NULL};
			execv(self, argv);
			_exit(127);
		}
		waitpid(p, NULL, 0);
	}
	return 0;
}

/* Connects without blocking and waits for the outcome; prints it. */
static void nbconnect1(int port)
{
	int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	must(c >= 0, "socket");
	struct sockaddr_in a = v4("127.0.0.1", port);
	int r = connect(c, (struct sockaddr *)&a, sizeof(a));
	if (r < 0 && errno == EINPROGRESS) {
		struct pollfd p = {.fd = c, .events = POLLOUT};
		poll(&p, 1, 5000);
		int err = 0;
		socklen_t n = sizeof(err);
		getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &n);
		printf("%d %s\n", port, err ? strerror(err) : "connected");
	} else {
		printf("%d immediate %s\n", port, r == 0 ? "connected" : strerror(errno));
	}
	close(c);
}

/* A handshake that cannot finish: the listener's accept queue is full, so
 * the SYN is dropped and the socket stays in SYN_SENT until it is closed. */
static int reconnect(void)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	must(l >= 0, "socket");
	struct sockaddr_in a = v4("127.0.0.1", 0);
	socklen_t n = sizeof(a);
	must(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0, "bind");
	must(listen(l, 0) == 0, "listen");
	must(getsockname(l, (struct sockaddr *)&a, &n) == 0, "getsockname");
	int first = socket(AF_INET, SOCK_STREAM, 0);
	must(first >= 0 && connect(first, (struct sockaddr *)&a, sizeof(a)) == 0, "connect to fill the queue");
	int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	must(c >= 0, "socket");
	int r1 = connect(c, (struct sockaddr *)&a, sizeof(a));
	int e1 = errno;
	int r2 = connect(c, (struct sockaddr *)&a, sizeof(a));
	int e2 = errno;
	printf("%s %s\n", r1 ? strerror(e1) : "connected", r2 ? strerror(e2) : "connected");
	close(c);
	return 0;
}

static struct sockaddr_in flipped;
static volatile int flipping = 1, flips;

static void *flipper(void *ports)
{
	const int *p = ports;
	for (unsigned i = 0; flipping; i++) {
		*(volatile unsigned short *)&flipped.sin_port = htons(p[i & 1]);
		flips = 1;
	}
	return NULL;
}

/* Blocking connects whose address changes under them, for the test that the
 * collector reports the address the kernel used, not what memory holds
 * afterwards. It connects at least n times and until both ports have been
 * used (the flipper thread may not be scheduled for a while on a busy
 * machine), then prints how many connects succeeded and how many were
 * refused: the outcome says which port the kernel used. */
static int flipconnect(int p, int q, int n)
{
	int ports[2] = {p, q};
	flipped = v4("127.0.0.1", p);
	pthread_t t;
	must(pthread_create(&t, NULL, flipper, ports) == 0, "pthread_create");
	while (!flips)
		sched_yield();
	int connected = 0, refused = 0;
	for (int i = 0; i < n || !connected || !refused; i++) {
		must(i < 1000 * n, "connects to both ports");
		int c = socket(AF_INET, SOCK_STREAM, 0);
		must(c >= 0, "socket");
		if (connect(c, (struct sockaddr *)&flipped, sizeof(flipped)) == 0)
			connected++;
		else if (errno == ECONNREFUSED)
			refused++;
		close(c);
	}
	flipping = 0;
	pthread_join(t, NULL);
	printf("connected %d refused %d\n", connected, refused);
	return 0;
}

/* Creates f in a new directory named c * n and enters it. */
static void descend(char c, int n, const char *f)
{
	char name[256];
	memset(name, c, n);
	name[n] = 0;
	must(mkdir(name, 0755) == 0 && chdir(name) == 0, "mkdir and enter");
	if (f) {
		int fd = open(f, O_CREAT | O_WRONLY, 0644);
		must(fd >= 0, "create");
		close(fd);
	}
}

/*
 * Paths the collector must record exactly: names around the length a
 * dentry keeps inline (32 bytes before Linux 6.14, 40 from it) and the
 * longest name; and paths it must record cut and say so: deeper than it
 * walks (96 components) and longer than it records (4095 bytes).
 */
static int paths(void)
{
	static const int lens[] = {31, 32, 39, 40, 41, 255};
	int top = open(".", O_RDONLY | O_DIRECTORY);
	must(top >= 0, "open .");
	for (int i = 0; i < 6; i++)
		descend('a' + i, lens[i], "f");
	must(fchdir(top) == 0, "back to the top");
	for (int i = 0; i < 100; i++)
		descend('d', 1, i == 99 ? "deep" : 0);
	must(fchdir(top) == 0, "back to the top");
	for (int i = 0; i < 17; i++)
		descend('L', 250, i == 16 ? "long" : 0);
	return 0;
}

static int iouring(void)
{
	unsigned char params[120]; /* struct io_uring_params */
	memset(params, 0, sizeof(params));
	long fd = syscall(425 /* io_uring_setup */, 4, params);
	if (fd < 0) {
		printf("io_uring_setup: %s\n", strerror(errno));
		return 1;
	}
	close(fd);
	return 0;
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return 0;
	int ok = write(fd, s, strlen(s)) == (ssize_t)strlen(s);
	close(fd);
	return ok;
}

static int mountns(void)
{
	if (unshare(CLONE_NEWNS) != 0) {
		uid_t uid = getuid();
		gid_t gid = getgid();
		must(unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0, "unshare");
		/* Mapped, so that files it creates have an owner. */
		char map[64];
		snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
		must(write_file("/proc/self/uid_map", map), "uid_map");
		must(write_file("/proc/self/setgroups", "deny"), "setgroups");
		snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
		must(write_file("/proc/self/gid_map", map), "gid_map");
	}
	/* Nothing mounted here may reach the namespace it came from. */
	must(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "make mounts private");
	must(mkdir("m", 0755) == 0, "mkdir m");
	must(mount("tmpfs", "m", "tmpfs", 0, NULL) == 0, "mount tmpfs");
	int fd = open("m/f", O_CREAT | O_WRONLY, 0644);
	must(fd >= 0, "create m/f");
	close(fd);
	return 0;
}

static int int80(void)
{
	/* A static, non-PIE binary keeps this below 4 GiB, as int 0x80 needs. */
	static const char path[] = "/nonexistent-int80";
	long ret;
	asm volatile("int $0x80" : "=a"(ret) : "a"(5L /* i386 open */), "b"((long)path), "c"(0L) : "memory");
	return ret < 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	self = argv[0];
	if (argc < 2)
		return 64;
	const char *cmd = argv[1];
	int n = argc > 2 ? atoi(argv[2]) : 0;
	if (!strcmp(cmd, "chain"))
		return chain(n);
	if (!strcmp(cmd, "fork"))
		return forkn(n);
	if (!strcmp(cmd, "open"))
		return opens();
	if (!strcmp(cmd, "fsops"))
		return fsops();
	if (!strcmp(cmd, "tcp"))
		return tcp(n);
	if (!strcmp(cmd, "udp"))
		return udp(n);
	if (!strcmp(cmd, "execfail"))
		return execfail();
	if (!strcmp(cmd, "daemon"))
		return daemonize();
	if (!strcmp(cmd, "connect"))
		return connectto(n);
	if (!strcmp(cmd, "noise") && argc > 2)
		return noise(argv[2]);
	if (!strcmp(cmd, "spin"))
		return spin(argc > 2 ? atol(argv[2]) : 0);
	if (!strcmp(cmd, "forkexec"))
		return forkexec(n);
	if (!strcmp(cmd, "churn"))
		return churn(argc > 2 ? atol(argv[2]) : 0);
	if (!strcmp(cmd, "repeats"))
		return repeats();
	if (!strcmp(cmd, "holdopen"))
		return holdopen(argc > 2 ? atol(argv[2]) : 0);
	if (!strcmp(cmd, "nbconnect") && argc > 3) {
		nbconnect1(n);
		nbconnect1(atoi(argv[3]));
		return 0;
	}
	if (!strcmp(cmd, "reconnect"))
		return reconnect();
	if (!strcmp(cmd, "flipconnect") && argc > 4)
		return flipconnect(n, atoi(argv[3]), atoi(argv[4]));
	if (!strcmp(cmd, "iouring"))
		return iouring();
	if (!strcmp(cmd, "mountns"))
		return mountns();
	if (!strcmp(cmd, "int80"))
		return int80();
	if (!strcmp(cmd, "paths"))
		return paths();
	return 64;
}
