/*
 * floor.c: the cheapest HTTP/1.1 server the cache benchmarks can put next
 * to the proxies, to show what the load side allows ("the floor").
 *
 * One thread, epoll; reads never block (MSG_DONTWAIT), writes may: the
 * kernel then waits for room inside the call, cheaper than returning and
 * asking epoll (wrk reads all the time, so nobody waits long). Every response is built once
 * at start from a file and written from where it lies (writev), so a
 * request costs a read, a parse that only finds the head's end and the
 * path, and a write: no cache look-up, no header edits, no logging, no
 * clock. Pipelined requests are answered in order. Anything it does not
 * know gets a 404; a head over 8 KiB closes the connection.
 *
 *   floor PORT PATH FILE [PATH FILE ...]
 *
 * Listens on 127.0.0.1 only. Bench use only: not a server for anything.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_OBJECTS 8
#define IN_SIZE 8192
#define QUEUE 64

struct answer {
    const char *path;
    char head[256];
    size_t head_len;
    char *body;
    size_t body_len;
};

struct conn {
    char in[IN_SIZE];
    size_t in_len;
    /* answers queued in order; the first may be partly sent */
    int queue[QUEUE];
    int queued;
    size_t sent; /* bytes of queue[0] (head + body) already sent */
    int want_out; /* EPOLLOUT is asked for */
};

static struct answer answers[MAX_OBJECTS + 1];
static int n_answers;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void load(const char *path, const char *file) {
    struct answer *a = &answers[n_answers++];
    int fd = open(file, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die(file);
    a->path = path;
    a->body_len = (size_t)st.st_size;
    a->body = malloc(a->body_len ? a->body_len : 1);
    if (!a->body)
        die("malloc");
    size_t got = 0;
    while (got < a->body_len) {
        ssize_t n = read(fd, a->body + got, a->body_len - got);
        if (n <= 0)
            die(file);
        got += (size_t)n;
    }
    close(fd);
    /* About the fields a proxy's cache hit carries, so wrk parses alike. */
    a->head_len = (size_t)snprintf(a->head, sizeof a->head,
                                   "HTTP/1.1 200 OK\r\nDate: Mon, 07 Dec 2026 00:00:00 GMT\r\n"
                                   "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n"
                                   "ETag: \"floor\"\r\nCache-Control: max-age=3600\r\nAge: 0\r\n\r\n",
                                   a->body_len);
}

/* The answer for a request head: its path picks it, else the 404. */
static int pick(const char *head, size_t len) {
    const char *sp = memchr(head, ' ', len);
    if (!sp)
        return n_answers;
    const char *path = sp + 1;
    const char *end = memchr(path, ' ', len - (size_t)(path - head));
    if (!end)
        return n_answers;
    size_t plen = (size_t)(end - path);
    for (int i = 0; i < n_answers; i++)
        if (strlen(answers[i].path) == plen && memcmp(answers[i].path, path, plen) == 0)
            return i;
    return n_answers;
}

/* One writev of every queued answer (the first perhaps partly sent
 * already); what it did not take waits for EPOLLOUT. 0 on success or a
 * full socket, -1 on error. */
static int flush(int fd, struct conn *c) {
    if (c->queued == 0)
        return 0;
    struct iovec iov[2 * QUEUE];
    int n = 0;
    size_t skip = c->sent;
    for (int i = 0; i < c->queued; i++) {
        struct answer *a = &answers[c->queue[i]];
        char *parts[2] = {a->head, a->body};
        size_t lens[2] = {a->head_len, a->body_len};
        for (int k = 0; k < 2; k++) {
            if (skip >= lens[k]) {
                skip -= lens[k];
                continue;
            }
            iov[n].iov_base = parts[k] + skip;
            iov[n].iov_len = lens[k] - skip;
            skip = 0;
            n++;
        }
    }
    ssize_t w = writev(fd, iov, n);
    if (w < 0)
        return errno == EAGAIN ? 0 : -1;
    size_t done = c->sent + (size_t)w;
    int k = 0;
    while (k < c->queued) {
        struct answer *a = &answers[c->queue[k]];
        size_t whole = a->head_len + a->body_len;
        if (done < whole)
            break;
        done -= whole;
        k++;
    }
    memmove(c->queue, c->queue + k, (size_t)(c->queued - k) * sizeof c->queue[0]);
    c->queued -= k;
    c->sent = done;
    return 0;
}

/* One read (level-triggered epoll tells again if more is waiting), the
 * answers to every whole head in it, then as much of them as the socket
 * takes. -1 when the connection is done. */
static int serve(int ep, int fd, struct conn *c, int readable) {
    if (readable && c->queued < QUEUE) {
        if (c->in_len == IN_SIZE)
            return -1;
        ssize_t r = recv(fd, c->in + c->in_len, IN_SIZE - c->in_len, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN))
            return -1;
        if (r > 0)
            c->in_len += (size_t)r;
        size_t start = 0;
        for (;;) {
            char *end = memmem(c->in + start, c->in_len - start, "\r\n\r\n", 4);
            if (!end || c->queued == QUEUE)
                break;
            size_t head_len = (size_t)(end + 4 - (c->in + start));
            c->queue[c->queued++] = pick(c->in + start, head_len);
            start += head_len;
        }
        memmove(c->in, c->in + start, c->in_len - start);
        c->in_len -= start;
    }
    if (flush(fd, c) < 0)
        return -1;
    /* epoll_ctl only when the interest changes: not once per request. */
    int want_out = c->queued > 0;
    if (want_out != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
        c->want_out = want_out;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc % 2 != 0 || (argc - 2) / 2 > MAX_OBJECTS) {
        fprintf(stderr, "usage: floor PORT PATH FILE [PATH FILE ...] (at most %d)\n", MAX_OBJECTS);
        return 2;
    }
    for (int i = 2; i < argc; i += 2)
        load(argv[i], argv[i + 1]);
    struct answer *nf = &answers[n_answers];
    nf->body = "not found\n";
    nf->body_len = strlen(nf->body);
    nf->head_len = (size_t)snprintf(nf->head, sizeof nf->head,
                                    "HTTP/1.1 404 Not Found\r\nContent-Length: %zu\r\n\r\n", nf->body_len);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(ls, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 4096) < 0)
        die("bind/listen");
    int ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    struct conn **conns = calloc(65536, sizeof *conns);
    struct epoll_event evs[128];
    for (;;) {
        int n = epoll_wait(ep, evs, 128, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, 0)) >= 0) {
                    if (c >= 65536) {
                        close(c);
                        continue;
                    }
                    conns[c] = calloc(1, sizeof **conns);
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            if (serve(ep, fd, conns[fd], (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) < 0) {
                close(fd);
                free(conns[fd]);
                conns[fd] = NULL;
            }
        }
    }
}
