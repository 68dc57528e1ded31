/* floor-client: the Mandos exchange's shape without TLS, for the socket
 * floor (bench/socket-floor.ts). Each of C threads loops: connect to ::1,
 * send "1\r\n", read HELLO bytes, send FLIGHT bytes, read until the server
 * closes. Starts no connection after D seconds; prints "done=N rate=R".
 *
 *   floor-client PORT C D
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* About what a ClientHello and a raw-public-key server flight weigh. */
enum { HELLO = 250, FLIGHT = 700 };

static int port;
static double stop_at;
static atomic_long done;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int read_exactly(int fd, char *buf, int n) {
    for (int got = 0; got < n;) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) return -1;
        got += (int)r;
    }
    return 0;
}

static void *loop(void *unused) {
    (void)unused;
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    struct sockaddr_in6 to = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    while (now() < stop_at) {
        int fd = socket(AF_INET6, SOCK_STREAM, 0), one = 1;
        if (fd < 0) { perror("socket"); exit(1); }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) { perror("connect"); exit(1); }
        if (write(fd, "1\r\n", 3) != 3 || read_exactly(fd, buf, HELLO) < 0 || write(fd, buf, FLIGHT) != FLIGHT) {
            fprintf(stderr, "floor-client: the exchange broke off\n");
            exit(1);
        }
        while (read(fd, buf, sizeof buf) > 0) {}
        close(fd);
        atomic_fetch_add(&done, 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: floor-client PORT CONCURRENCY SECONDS\n"); return 2; }
    port = atoi(argv[1]);
    int c = atoi(argv[2]);
    double t0 = now();
    stop_at = t0 + atof(argv[3]);
    pthread_t *threads = calloc(c, sizeof *threads);
    for (int i = 0; i < c; i++) pthread_create(&threads[i], NULL, loop, NULL);
    for (int i = 0; i < c; i++) pthread_join(threads[i], NULL);
    printf("done=%ld rate=%.0f\n", (long)done, done / (now() - t0));
    return 0;
}
