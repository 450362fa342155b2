# cognito-batch as a container for AWS Batch, ECS and Kubernetes (docs/scheduling.md).
#   docker build -t cognito-batch:0.1.0 .
# Dependencies come from requirements/lock.txt (hash-checked) through docker/install.sh, the
# same script CI runs in a clean virtual environment (.ci/run).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/cognito-batch/bin:$PATH

# A fixed, unprivileged user: the tool needs no root, and its files (reports, journals,
# before-images: personal data) are created owner-only for it.
RUN groupadd --system --gid 10001 cognito \
 && useradd --system --uid 10001 --gid cognito --create-home --home-dir /home/cognito cognito

COPY requirements/lock.txt /src/requirements/lock.txt
COPY docker/install.sh /src/docker/install.sh
COPY pyproject.toml README.md /src/
COPY batch /src/batch
RUN PYTHON=python /src/docker/install.sh /opt/cognito-batch && rm -rf /src

USER 10001:10001
WORKDIR /home/cognito
ENTRYPOINT ["cognito-batch"]
CMD ["--help"]
