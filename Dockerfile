# authsite in a container. SQLite and the generated secret key live in the
# /data volume; set AUTHSITE_DATABASE_URL to use Postgres instead.
#
#   docker build -t authsite .
#   docker run -p 8000:8000 -v authsite-data:/data \
#     -e AUTHSITE_BASE_URL=https://login.example.com \
#     -e AUTHSITE_ADMIN_USERNAME=admin -e AUTHSITE_ADMIN_PASSWORD='a long admin phrase' authsite
#
# AUTHSITE_BASE_URL is the address people open: links in mail point there (without it they would
# say http://localhost:8000, since the container listens on 0.0.0.0). To try the image on your own
# computer, set it to http://localhost:8000.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AUTHSITE_DATA_DIR=/data \
    AUTHSITE_HOST=0.0.0.0 \
    AUTHSITE_PORT=8000

# The runtime packages exactly as locked (hashes checked, the Postgres driver among them), so two
# builds of one commit install the same files; then the package alone; no test tools.
# `pip check` fails the build should the lock miss a dependency the package declares.
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY authsite ./authsite
COPY templates ./templates
COPY static ./static
RUN pip install --no-deps --require-hashes -r requirements.lock \
    && pip install --no-deps . \
    && pip check \
    && rm -rf /src

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin authsite \
    && mkdir /data && chown authsite:authsite /data && chmod 700 /data
VOLUME /data
WORKDIR /data
USER authsite

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AUTHSITE_PORT', '8000'), timeout=4); sys.exit(0 if r.status == 200 else 1)"]

CMD ["authsite", "serve"]
