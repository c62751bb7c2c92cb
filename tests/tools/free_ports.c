/* free_ports.c - prints N distinct loopback TCP ports the kernel chose (bind to port 0).
 *
 * Usage: vsr_free_ports N   (1 <= N <= 64)
 * All N sockets are bound at once, so the ports differ, then released for
 * the caller to use (a test that starts servers on them: spec/client_spec.lua).
 * A port another process takes in between makes that server fail to bind,
 * loudly; fixed port numbers would collide with every concurrent run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int n = argc == 2 ? atoi(argv[1]) : 0;
	if (n < 1 || n > 64) {
		fprintf(stderr, "usage: vsr_free_ports N (1 to 64)\n");
		return 64;
	}
	int fds[64];
	for (int i = 0; i < n; i++) {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t len = sizeof a;
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
		    getsockname(fds[i], (struct sockaddr *)&a, &len) != 0) {
			fprintf(stderr, "vsr_free_ports: %s\n", strerror(errno));
			return 1;
		}
		printf("%s%u", i ? " " : "", (unsigned)ntohs(a.sin_port));
	}
	printf("\n");
	for (int i = 0; i < n; i++)
		close(fds[i]);
	return 0;
}
