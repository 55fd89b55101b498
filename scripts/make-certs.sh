#!/bin/sh
# make-certs.sh [--expired] [--ca-name NAME] DIR NAME...
#
# Makes a certificate authority in DIR (DIR/ca.pem, DIR/ca-key.pem) unless
# one is there, and for each NAME a credentials directory DIR/NAME holding
# ca.pem, cert.pem and key.pem, the layout ftvm's --tls-creds (and QEMU's
# tls-creds-x509) reads.  Each certificate names NAME (subjectAltName
# DNS:NAME, and IP:NAME when NAME is an address) and 127.0.0.1, so that a
# pair on one machine can use it; it serves as client and server.
#
#   --expired       the node certificates expired a year ago (for tests)
#   --days N        validity of new certificates (default 825)
#
# A second, unrelated CA is just another DIR.  Keys are made with mode 0600;
# never commit them.
set -eu

expired=no
days=825
while [ $# -gt 0 ]; do
    case "$1" in
    --expired) expired=yes; shift ;;
    --days) days=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) echo "make-certs.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
if [ $# -lt 2 ]; then
    echo "usage: make-certs.sh [--expired] [--days N] DIR NAME..." >&2
    exit 2
fi
command -v openssl >/dev/null || {
    echo "make-certs.sh: openssl not found (apt-get install openssl)" >&2
    exit 1
}
dir=$1
shift
umask 077
mkdir -p "$dir"

if [ ! -f "$dir/ca.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" -days "$days" \
        -subj "/CN=ftvm CA $(basename "$dir")" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for name in "$@"; do
    node="$dir/$name"
    mkdir -p "$node"
    case "$name" in
    *[!0-9.]*) san="DNS:$name" ;;
    *) san="IP:$name" ;;
    esac
    [ "$name" = 127.0.0.1 ] || san="$san,IP:127.0.0.1"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$node/key.pem" -out "$work/req.pem" -subj "/CN=$name" \
        2>/dev/null
    cat >"$work/ext.cnf" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EOF
    if [ $expired = yes ]; then
        # openssl x509 cannot back-date: a throwaway `openssl ca` can.
        mkdir -p "$work/ca"
        : >"$work/ca/index.txt"
        cat >"$work/ca.cnf" <<EOF
[ca]
default_ca = d
[d]
database = $work/ca/index.txt
new_certs_dir = $work/ca
serial = $work/ca/serial
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
EOF
        openssl rand -hex 8 >"$work/ca/serial"
        openssl ca -batch -config "$work/ca.cnf" -notext \
            -cert "$dir/ca.pem" -keyfile "$dir/ca-key.pem" \
            -in "$work/req.pem" -out "$node/cert.pem" \
            -startdate 20200101000000Z -enddate 20210101000000Z \
            -extfile "$work/ext.cnf" 2>/dev/null
    else
        openssl x509 -req -in "$work/req.pem" -CA "$dir/ca.pem" \
            -CAkey "$dir/ca-key.pem" -CAcreateserial -days "$days" \
            -sha256 -extfile "$work/ext.cnf" -out "$node/cert.pem" \
            2>/dev/null
    fi
    cp "$dir/ca.pem" "$node/ca.pem"
    chmod 644 "$node/ca.pem" "$node/cert.pem"
    echo "$node: ca.pem cert.pem key.pem ($san)"
done
