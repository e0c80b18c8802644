# Builds the `mandate` binary; docker-compose.yml runs two replicas of it on one PostgreSQL.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mandate

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/mandate mandate && mkdir -p /var/lib/mandate && chown mandate /var/lib/mandate
COPY --from=build /src/target/release/mandate /usr/local/bin/mandate
COPY mandate.toml /etc/mandate/mandate.toml
USER mandate
WORKDIR /var/lib/mandate
EXPOSE 8080
ENTRYPOINT ["mandate", "serve", "--config", "/etc/mandate/mandate.toml"]
