/*
 * The io_uring floor: the least work an io_uring HTTP/1.1 server can do per keep-alive request,
 * beside floor.c's epoll floor, for the io_uring backend (`--io uring`, issue #19) to be read
 * against.
 *
 *   floor_uring PORT RESPONSE_FILE
 *
 * RESPONSE_FILE holds one complete response, exactly as atomserve sends it. As in floor.c,
 * nothing is parsed: each "\r\n\r\n" received counts as one request and is answered with those
 * bytes. One ring (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN), a multishot accept
 * on the listener, per connection one multishot receive into a provided-buffer ring (256 × 4 KiB),
 * and per receive completion one send of everything owed, from a buffer of 16 responses laid
 * back to back (a pipelined batch goes in one send; a partial send is resumed). One
 * io_uring_submit_and_wait(1) per loop turn: the same shape as atomserve's ring worker below its
 * batching, so the gap between the two is atomserve's own work.
 *
 * Built by benches/load/peers.sh with `gcc -O2 … -luring` (Debian's liburing-dev); a yardstick,
 * not a server.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FDS 65536
#define BUFS 256
#define BUF_SIZE 4096
#define BATCH 16
#define GROUP 0

enum { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };
#define TAG(op, fd) (((uint64_t)(op) << 32) | (uint32_t)(fd))

struct conn {
    uint64_t owed;   /* requests received and not yet answered */
    size_t at, len;  /* the send in flight: bytes [at, len) of the batch buffer */
    int sending;     /* a send is in flight */
    int recv_armed;  /* the multishot receive is armed */
    int closing;     /* the peer is gone; close once nothing is in flight */
    int match;       /* how much of "\r\n\r\n" the last bytes matched */
};

static struct conn conns[MAX_FDS];
static char *batch;     /* BATCH copies of the response */
static size_t resp_len;
static char *buf_mem;
static struct io_uring_buf_ring *br;

static void die(const char *what) { perror(what); exit(1); }

static struct io_uring_sqe *sqe_of(struct io_uring *ring) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

static void arm_recv(struct io_uring *ring, int fd) {
    struct io_uring_sqe *sqe = sqe_of(ring);
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = GROUP;
    io_uring_sqe_set_data64(sqe, TAG(OP_RECV, fd));
    conns[fd].recv_armed = 1;
}

static void send_owed(struct io_uring *ring, int fd) {
    struct conn *c = &conns[fd];
    if (c->sending || c->owed == 0 || c->closing)
        return;
    uint64_t n = c->owed < BATCH ? c->owed : BATCH;
    c->at = 0;
    c->len = n * resp_len;
    c->owed -= n;
    struct io_uring_sqe *sqe = sqe_of(ring);
    io_uring_prep_send(sqe, fd, batch, c->len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, TAG(OP_SEND, fd));
    c->sending = 1;
}

static void maybe_close(int fd) {
    struct conn *c = &conns[fd];
    if (c->closing && !c->sending && !c->recv_armed) {
        close(fd);
        memset(c, 0, sizeof *c);
    }
}

static void give_back(int bid) {
    io_uring_buf_ring_add(br, buf_mem + (size_t)bid * BUF_SIZE, BUF_SIZE, bid, io_uring_buf_ring_mask(BUFS), 0);
    io_uring_buf_ring_advance(br, 1);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floor_uring PORT RESPONSE_FILE\n");
        return 2;
    }
    int rf = open(argv[2], O_RDONLY);
    struct stat st;
    if (rf < 0 || fstat(rf, &st) < 0) die(argv[2]);
    resp_len = st.st_size;
    batch = malloc(resp_len * BATCH);
    if (!batch || read(rf, batch, resp_len) != (ssize_t)resp_len) die("read response");
    for (int i = 1; i < BATCH; i++) memcpy(batch + i * resp_len, batch, resp_len);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) die("listen");

    struct io_uring ring;
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                         IORING_SETUP_CQSIZE, .cq_entries = 16384};
    int err = io_uring_queue_init_params(4096, &ring, &p);
    if (err < 0) { errno = -err; die("io_uring_queue_init_params"); }

    br = mmap(NULL, BUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    buf_mem = mmap(NULL, (size_t)BUFS * BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (br == MAP_FAILED || buf_mem == MAP_FAILED) die("mmap");
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)br, .ring_entries = BUFS, .bgid = GROUP};
    err = io_uring_register_buf_ring(&ring, &reg, 0);
    if (err < 0) { errno = -err; die("io_uring_register_buf_ring"); }
    io_uring_buf_ring_init(br);
    for (int i = 0; i < BUFS; i++) give_back(i);

    struct io_uring_sqe *sqe = sqe_of(&ring);
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, TAG(OP_ACCEPT, lfd));

    for (;;) {
        err = io_uring_submit_and_wait(&ring, 1);
        if (err < 0 && err != -EINTR && err != -ETIME && err != -EBUSY) { errno = -err; die("io_uring_submit_and_wait"); }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            uint64_t tag = io_uring_cqe_get_data64(cqe);
            int op = tag >> 32, fd = (int)(uint32_t)tag, res = cqe->res;
            int more = cqe->flags & IORING_CQE_F_MORE;
            if (op == OP_ACCEPT) {
                if (res >= 0 && res < MAX_FDS) {
                    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    arm_recv(&ring, res);
                } else if (res >= 0) {
                    close(res);
                }
                if (!more) { /* re-arm the accept */
                    sqe = sqe_of(&ring);
                    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
                    io_uring_sqe_set_data64(sqe, TAG(OP_ACCEPT, lfd));
                }
                continue;
            }
            struct conn *c = &conns[fd];
            if (op == OP_RECV) {
                if (!more) c->recv_armed = 0;
                if (res > 0) {
                    int bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                    const char *b = buf_mem + (size_t)bid * BUF_SIZE;
                    for (int i = 0; i < res; i++) { /* count "\r\n\r\n", across reads too */
                        char want = (c->match & 1) ? '\n' : '\r';
                        if (b[i] == want) {
                            if (++c->match == 4) { c->owed++; c->match = 0; }
                        } else {
                            c->match = b[i] == '\r';
                        }
                    }
                    give_back(bid);
                    send_owed(&ring, fd);
                    if (!more && !c->closing) arm_recv(&ring, fd);
                } else if (res == -ENOBUFS) {
                    arm_recv(&ring, fd);
                } else {
                    c->closing = 1;
                }
            } else if (op == OP_SEND) {
                c->sending = 0;
                if (res <= 0) {
                    c->closing = 1;
                } else if ((c->at += res) < c->len) { /* partial: the rest */
                    sqe = sqe_of(&ring);
                    io_uring_prep_send(sqe, fd, batch + c->at, c->len - c->at, MSG_NOSIGNAL);
                    io_uring_sqe_set_data64(sqe, TAG(OP_SEND, fd));
                    c->sending = 1;
                } else {
                    send_owed(&ring, fd);
                }
            }
            if (c->closing && c->recv_armed) { /* stop the receive, then close */
                shutdown(fd, SHUT_RDWR);
            }
            maybe_close(fd);
        }
        io_uring_cq_advance(&ring, seen);
    }
}
