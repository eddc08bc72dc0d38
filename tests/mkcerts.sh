#!/bin/sh
# Make a private test PKI with openssl: a CA and server certificates for the
# test smarthost (good, wrong hostname, expired, signed by an untrusted CA).
# usage: mkcerts.sh DIR
set -eu
d=$1
mkdir -p "$d"
cd "$d"
[ -f done ] && exit 0
q() { "$@" >/dev/null 2>&1 || { echo "mkcerts: failed: $*" >&2; "$@"; exit 1; }; }

mkca() { # name cn
	q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$1.key" -out "$1.crt" -days 30 -subj "/CN=$2" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
mkleaf() { # name ca san [startdate enddate]
	q openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$1.key" -out "$1.csr" -subj "/CN=$1"
	printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$3" > "$1.ext"
	if [ $# -ge 5 ]; then
		mkdir -p ca.db; : > ca.db/index; echo 01 > ca.db/serial
		cat > ca.cnf <<CNF
[ca]
default_ca = d
[d]
database = ca.db/index
serial = ca.db/serial
new_certs_dir = ca.db
default_md = sha256
policy = p
copy_extensions = none
[p]
commonName = supplied
CNF
		q openssl ca -batch -config ca.cnf -cert "$2.crt" -keyfile "$2.key" -in "$1.csr" \
			-out "$1.crt" -startdate "$4" -enddate "$5" -extfile "$1.ext" -notext
	else
		q openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial \
			-out "$1.crt" -days 30 -extfile "$1.ext"
	fi
}

mkca ca "smtprelay test CA"
mkca untrusted-ca "some other CA"
mkleaf good ca "DNS:localhost,IP:127.0.0.1,IP:::1"
mkleaf wronghost ca "DNS:wrong.example"
mkleaf expired ca "DNS:localhost,IP:127.0.0.1" 20200101000000Z 20200201000000Z
mkleaf untrusted untrusted-ca "DNS:localhost,IP:127.0.0.1"
touch done
