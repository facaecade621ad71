#!/usr/bin/env bash
# Make the mTLS material for manifests/ with openssl and create the two
# Secrets the pods mount (keys tls.crt, tls.key, ca.crt):
#   manifests/make-certs.sh [DIR]          write DIR (default ./packetstreamer-certs)
#   manifests/make-certs.sh DIR --apply    ... and kubectl apply the Secrets
# One CA signs the receiver's server certificate (the Service's DNS names) and
# the sensors' client certificate. Namespace and domain: NAMESPACE
# (packetstreamer), CLUSTER_DOMAIN (cluster.local), DAYS (825).
set -euo pipefail
dir=${1:-./packetstreamer-certs}
ns=${NAMESPACE:-packetstreamer}
domain=${CLUSTER_DOMAIN:-cluster.local}
days=${DAYS:-825}
svc=packetstreamer-receiver
mkdir -p "$dir"; cd "$dir"
umask 077

# CA
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=packetstreamer-ca" -keyout ca.key -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# receiver: server certificate for the Service's names
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=$svc.$ns.svc.$domain" -keyout receiver.key -out receiver.csr 2>/dev/null
openssl x509 -req -in receiver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -out receiver.crt \
  -extfile <(printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.%s.svc,DNS:%s.%s.svc.%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' \
      "$svc" "$svc" "$ns" "$svc" "$ns" "$svc" "$ns" "$domain") 2>/dev/null

# sensors: one client certificate shared by the DaemonSet's pods
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=packetstreamer-sensor" -keyout sensor.key -out sensor.csr 2>/dev/null
openssl x509 -req -in sensor.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -out sensor.crt \
  -extfile <(printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n') 2>/dev/null
rm -f ./*.csr ca.srl

openssl verify -purpose sslserver -CAfile ca.crt receiver.crt >/dev/null
openssl verify -purpose sslclient -CAfile ca.crt sensor.crt >/dev/null

for who in receiver sensor; do
  kubectl create secret generic "packetstreamer-$who-tls" --namespace "$ns" --type kubernetes.io/tls \
    --from-file=tls.crt="$who.crt" --from-file=tls.key="$who.key" --from-file=ca.crt=ca.crt \
    --dry-run=client -o yaml >"secret-$who.yaml"
done
echo "certificates and Secrets in $PWD (keep ca.key offline)"
if [ "${2:-}" = --apply ]; then
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
  kubectl apply -f secret-receiver.yaml -f secret-sensor.yaml
else
  echo "create them with: kubectl create namespace $ns; kubectl apply -f $PWD/secret-receiver.yaml -f $PWD/secret-sensor.yaml"
fi
