# syntax=docker/dockerfile:1
# atomserve in a container: the front end and the server are built in two stages, then copied
# into a distroless runtime image (glibc and libgcc, no shell, no package manager) that runs as
# an unprivileged user. The image's own health check is `atomserve --healthcheck` (there is no
# curl in it). See docs/deploy.md; this image has not been built on the project's machines, which
# have no Docker daemon — hadolint checks this file in `make test`.
#
#   docker build -t atomserve .
#   docker run --rm -p 8080:8080 -p 9464:9464 atomserve

# 1. The front end: Deno as pinned in tools/package.json (from npm), then vite.
FROM node:22-bookworm-slim AS frontend
WORKDIR /src
COPY tools/package.json tools/package-lock.json tools/
RUN npm ci --prefix tools --no-audit --no-fund
COPY frontend/ frontend/
ENV DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1
WORKDIR /src/frontend
RUN ../tools/node_modules/.bin/deno install --frozen \
 && ../tools/node_modules/.bin/deno task build

# 2. The server: a release build against Cargo.lock, on the same Debian as the runtime image.
FROM rust:1.95-slim-bookworm AS server
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src/ src/
COPY benches/ benches/
COPY loom-tests/ loom-tests/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin atomserve \
 && install -D -m 0755 target/release/atomserve /out/atomserve

# 3. The runtime: distroless with glibc (the binary links libc, libm, libgcc_s), user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=server /out/atomserve /usr/local/bin/atomserve
COPY --from=frontend /src/frontend/dist /srv/www
# Every flag is also an ATOMSERVE_* variable; override them with `docker run -e`.
ENV ATOMSERVE_ROOT=/srv/www \
    ATOMSERVE_LISTEN=0.0.0.0:8080 \
    ATOMSERVE_ADMIN_LISTEN=0.0.0.0:9464 \
    ATOMSERVE_SHUTDOWN_GRACE=10s
# Numeric, so that Kubernetes can check runAsNonRoot: distroless's "nonroot".
USER 65532:65532
EXPOSE 8080 9464
# 200 from the admin /healthz while serving; 503 (unhealthy) once draining.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/atomserve", "--healthcheck", "http://127.0.0.1:9464/healthz"]
# SIGTERM drains: stop accepting, finish in-flight responses within ATOMSERVE_SHUTDOWN_GRACE.
# Give `docker stop` a longer timeout than the grace (docker stop -t 15).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/atomserve"]
