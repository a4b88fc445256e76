#!/usr/bin/env bash
# Create the Secret `agentmgr-secrets` for the dev overlay, with fresh random values.
# Nothing secret is written to disk or passed on a command line (the values go to
# kubectl on stdin). Needs kubectl (pointed at the dev cluster) and python3.
#
#   deploy/k8s/overlays/dev/create-secret.sh          # NAMESPACE=agentmgr by default
#
# It refuses to replace an existing Secret: the encryption key in it is what decrypts
# the stored provider keys. Rotate keys as docs/deploy.md describes instead.
set -euo pipefail

namespace="${NAMESPACE:-agentmgr}"

if kubectl get namespace "$namespace" >/dev/null 2>&1; then :; else
    kubectl create namespace "$namespace"
fi
if kubectl -n "$namespace" get secret agentmgr-secrets >/dev/null 2>&1; then
    echo "secret/agentmgr-secrets already exists in namespace $namespace; leaving it alone" >&2
    exit 1
fi

random() { python3 -c "$1"; }
# Hex, so it needs no escaping inside DATABASE_URL.
pg_password="$(random 'import secrets; print(secrets.token_hex(24))')"
# The form `agentmgr gen-key` prints (a Fernet key).
encryption_key="$(random 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"
# The form `agentmgr keys create` hands out.
admin_key="$(random 'import secrets; print("amk_" + secrets.token_urlsafe(32))')"
service_key="$(random 'import secrets; print("amk_" + secrets.token_urlsafe(32))')"

kubectl -n "$namespace" create secret generic agentmgr-secrets --from-env-file=/dev/stdin <<ENV
POSTGRES_PASSWORD=${pg_password}
DATABASE_URL=postgresql://agentmgr:${pg_password}@postgres:5432/agentmgr
NATS_URL=nats://nats:4222
ENCRYPTION_KEYS=${encryption_key}
BOOTSTRAP_ADMIN_KEY=${admin_key}
SERVICE_API_KEY=${service_key}
ENV
kubectl -n "$namespace" label secret agentmgr-secrets app.kubernetes.io/part-of=agentmgr >/dev/null

cat <<MSG
created secret/agentmgr-secrets in namespace $namespace
the admin API key:
  kubectl -n $namespace get secret agentmgr-secrets -o jsonpath='{.data.BOOTSTRAP_ADMIN_KEY}' | base64 -d
MSG
