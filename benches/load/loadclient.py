#!/usr/bin/env python3
"""Fixed-count HTTP/1.1 clients for the load harness (benches/load/peers.sh), where wrk's
fixed duration will not do.

    loadclient.py fixed PORT PATH REQUESTS CONNS DEPTH
        REQUESTS keep-alive GETs over CONNS connections, DEPTH per write (1: plain keep-alive,
        16: pipelined), then prints `requests=N errors=N`. For `strace -c` and `perf stat`,
        whose counts are divided by an exact number of requests.
    loadclient.py idle PORT PATH CONNS
        Opens CONNS connections, sends one GET on each and reads its response, prints `ready`,
        keeps them idle until standard input closes or a line arrives. For the server's RSS per
        idle keep-alive connection.

Responses are not parsed: a probe on a connection of its own learns the length of one response
(head + Content-Length), and every batch then reads DEPTH times that many bytes. Each batch's
first status line is checked; a short read or a non-200 counts as an error and ends that
connection.
"""
import socket
import sys
import threading

HOST = "127.0.0.1"


def request(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: loadclient\r\n\r\n".encode()


def read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ConnectionError(f"closed after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def response_length(port: int, path: str) -> int:
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(request(port, path))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("probe: closed before the head ended")
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0]
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"probe: {head.splitlines()[0]!r}")
        length = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                  if line.lower().startswith(b"content-length:")]
        return len(head) + 4 + length[0]


def fixed(port: int, path: str, requests: int, conns: int, depth: int) -> None:
    one = response_length(port, path)
    batch = request(port, path) * depth
    batches = requests // (conns * depth)
    done, errors, lock = [0], [0], threading.Lock()

    def run() -> None:
        n = 0
        try:
            with socket.create_connection((HOST, port), timeout=10) as s:
                for _ in range(batches):
                    s.sendall(batch)
                    if not read_exactly(s, one * depth).startswith(b"HTTP/1.1 200"):
                        raise ConnectionError("non-200")
                    n += depth
        except (OSError, ConnectionError):
            with lock:
                errors[0] += 1
        with lock:
            done[0] += n

    threads = [threading.Thread(target=run) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"requests={done[0]} errors={errors[0]}")


def idle(port: int, path: str, conns: int) -> None:
    one = response_length(port, path)
    req = request(port, path)
    socks = []
    for _ in range(conns):
        s = socket.create_connection((HOST, port), timeout=30)
        s.sendall(req)
        socks.append(s)
    errors = 0
    for s in socks:
        try:
            if not read_exactly(s, one).startswith(b"HTTP/1.1 200"):
                errors += 1
        except (OSError, ConnectionError):
            errors += 1
    print(f"ready conns={len(socks)} errors={errors}", flush=True)
    sys.stdin.readline()
    for s in socks:
        s.close()


def main() -> None:
    mode, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "fixed":
        fixed(port, path, int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif mode == "idle":
        idle(port, path, int(sys.argv[4]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
