# agentd in a container: Debian 12, multi-stage, runs as a non-root user.
#
#   docker build -t agentd .
#   docker run --rm -e OPENROUTER_API_KEY \
#       agentd --config /etc/agentd/agent.toml -p "Add and multiply 2 and 3"
#
# The image's configs point [plugins] dir at /usr/lib/agentd/plugins; a
# config of your own can be mounted anywhere (-v "$PWD/my.toml:/my.toml:ro").

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config python3 \
      libuv1-dev libcurl4-openssl-dev libjson-c-dev libyaml-dev libedit-dev libsqlite3-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make clean && make -j"$(nproc)" && make test \
 && make install PREFIX=/usr DESTDIR=/out

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libuv1 libcurl4 libjson-c5 libyaml-0-2 libedit2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /home/agentd agentd
COPY --from=build /out/usr/ /usr/
COPY configs/ /etc/agentd/
RUN sed -i 's|^dir = .*|dir = "/usr/lib/agentd/plugins"|' /etc/agentd/*.toml
USER agentd
WORKDIR /home/agentd
ENTRYPOINT ["agentd"]
CMD ["--help"]
