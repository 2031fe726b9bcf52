#!/usr/bin/env bash
# Makes the secrets deploy/compose.yaml needs, once: deploy/.env (token, webhook, database and
# Grafana secrets) and deploy/secrets/auth-signing-key.pem (the RS256 key every gateway replica
# signs logins with). Both stay out of git (deploy/.gitignore). Refuses to overwrite.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
if [ -e .env ] || [ -e secrets/auth-signing-key.pem ]; then
  echo "deploy/.env or deploy/secrets/ exists already; remove them to start over" >&2
  exit 1
fi
mkdir -p secrets
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out secrets/auth-signing-key.pem 2>/dev/null
# Compose bind-mounts the file with its host mode: the image's user (uid 10001) must read it;
# the 0700 directory keeps other host users out.
chmod 0644 secrets/auth-signing-key.pem
cat > .env <<ENV
QUEUE_TOKEN_SECRET=$(openssl rand -hex 32)
PAYMENT_WEBHOOK_SECRET=$(openssl rand -hex 32)
POSTGRES_PASSWORD=$(openssl rand -hex 24)
GRAFANA_ADMIN_PASSWORD=$(openssl rand -hex 12)
ENV
echo "wrote deploy/.env and deploy/secrets/auth-signing-key.pem"
