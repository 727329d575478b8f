# agentd in a container: Debian 12, multi-stage, runs as a non-root user.
#
#   docker build -t agentd .
#   docker run --rm agentd demo                        # offline demo: no key, no network
#   docker run --rm -e OPENROUTER_API_KEY agentd -p "Add and multiply 2 and 3"
#   docker run --rm -it -e OPENROUTER_API_KEY agentd   # a conversation
#
# README.md, "Docker", has the rest: a config of your own, sessions on a
# volume, a local llama.cpp or Ollama server.

FROM debian:bookworm-slim AS build
WORKDIR /src
# The same list of build and test packages as for `make test` on a host:
# every program a test runs is in it.
COPY mk/deps.sh mk/
RUN sh mk/deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make clean && make -j"$(nproc)" && make test \
 && make install PREFIX=/usr DESTDIR=/out

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libuv1 libcurl4 libjson-c5 libyaml-0-2 libedit2 libhiredis0.14 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /home/agentd agentd \
 && install -d -o agentd -g agentd -m 0700 /home/agentd/.local /home/agentd/.local/state \
      /home/agentd/.local/state/agentd
COPY --from=build /out/usr/ /usr/
COPY configs/ /etc/agentd/
COPY tests/fixtures/demo.yaml /usr/share/agentd/demo/
COPY mk/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# The configs name the installed plugins (the image's agentd also finds
# them without [plugins] dir).
RUN sed -i 's|^dir = .*|dir = "/usr/lib/agentd/plugins"|' /etc/agentd/*.toml \
 && chmod 0755 /usr/local/bin/docker-entrypoint.sh
ENV AGENTD_CONFIG=/etc/agentd/agent.toml
USER agentd
WORKDIR /home/agentd
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["--help"]
