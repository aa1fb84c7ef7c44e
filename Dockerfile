FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin annals

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/annals annals \
    && mkdir -p /var/lib/annals && chown annals /var/lib/annals
COPY --from=build /src/target/release/annals /usr/local/bin/annals
USER annals
EXPOSE 8080
ENTRYPOINT ["annals"]
CMD ["serve"]
