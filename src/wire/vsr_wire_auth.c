/* vsr_wire_auth.c - authenticated connections: key files, the HELLO/AUTH proof, per-frame MACs (libsodium).
 *
 * Every construction is keyed BLAKE2b (libsodium's crypto_generichash),
 * with a distinct label per use so that no value computed for one purpose
 * is ever valid for another:
 *
 *   direction key(A -> B) = BLAKE2b-256(K, "vsrhost dir v1"  | cluster | nonce_A | nonce_B)
 *   proof(A to B)         = BLAKE2b-256(K, "vsrhost auth v1" | cluster | role_A | replica_A
 *                                          | nonce_A | nonce_B)
 *   MAC(frame)            = BLAKE2b-128(direction key, seq | header | body)
 *
 * nonce_A is the 32 random bytes in A's HELLO; cluster is little endian;
 * seq counts A's sealed frames on this connection from 0. B chose nonce_B
 * for this connection alone, so a proof or a frame recorded from another
 * connection never verifies here, and the sequence number makes a dropped,
 * repeated or reordered frame fail its MAC. */
#include "vsr_wire.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

static const char wire_auth_dir_label[] = "vsrhost dir v1";
static const char wire_auth_proof_label[] = "vsrhost auth v1";

static void wire_auth_init(void)
{
	/* Idempotent and thread safe; fails only without an entropy source,
	 * where nothing here could be secure. */
	if (sodium_init() < 0)
		abort();
}

static void wire_auth_le64(uint8_t out[8], uint64_t v)
{
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

static void wire_auth_direction_key(const vsr_wire_handshake *hs, const uint8_t *from_nonce,
				    const uint8_t *to_nonce, uint8_t out[VSR_WIRE_KEY_SIZE])
{
	crypto_generichash_state st;
	uint8_t cluster[8];
	wire_auth_le64(cluster, hs->cluster);
	crypto_generichash_init(&st, hs->key, VSR_WIRE_KEY_SIZE, VSR_WIRE_KEY_SIZE);
	crypto_generichash_update(&st, (const uint8_t *)wire_auth_dir_label,
				  sizeof wire_auth_dir_label - 1);
	crypto_generichash_update(&st, cluster, sizeof cluster);
	crypto_generichash_update(&st, from_nonce, VSR_WIRE_NONCE_SIZE);
	crypto_generichash_update(&st, to_nonce, VSR_WIRE_NONCE_SIZE);
	crypto_generichash_final(&st, out, VSR_WIRE_KEY_SIZE);
}

static void wire_auth_proof(const vsr_wire_handshake *hs, uint8_t role, uint8_t replica,
			    const uint8_t *from_nonce, const uint8_t *to_nonce,
			    uint8_t out[VSR_WIRE_PROOF_SIZE])
{
	crypto_generichash_state st;
	uint8_t fixed[10];
	wire_auth_le64(fixed, hs->cluster);
	fixed[8] = role;
	fixed[9] = replica;
	crypto_generichash_init(&st, hs->key, VSR_WIRE_KEY_SIZE, VSR_WIRE_PROOF_SIZE);
	crypto_generichash_update(&st, (const uint8_t *)wire_auth_proof_label,
				  sizeof wire_auth_proof_label - 1);
	crypto_generichash_update(&st, fixed, sizeof fixed);
	crypto_generichash_update(&st, from_nonce, VSR_WIRE_NONCE_SIZE);
	crypto_generichash_update(&st, to_nonce, VSR_WIRE_NONCE_SIZE);
	crypto_generichash_final(&st, out, VSR_WIRE_PROOF_SIZE);
}

void vsr_wire_handshake_init(vsr_wire_handshake *hs, const uint8_t key[VSR_WIRE_KEY_SIZE],
			     uint64_t cluster, uint8_t role, uint8_t replica)
{
	wire_auth_init();
	memset(hs, 0, sizeof *hs);
	memcpy(hs->key, key, VSR_WIRE_KEY_SIZE);
	hs->cluster = cluster;
	hs->my_role = role;
	hs->my_replica = replica;
	randombytes_buf(hs->my_nonce, sizeof hs->my_nonce);
}

int vsr_wire_handshake_peer_hello(vsr_wire_handshake *hs, const vsr_wire_hello *peer,
				  vsr_wire_auth *auth)
{
	if (!peer->has_nonce)
		return -VSR_WIRE_EMAC;
	memcpy(hs->peer_nonce, peer->nonce, VSR_WIRE_NONCE_SIZE);
	hs->have_peer_nonce = true;
	wire_auth_direction_key(hs, hs->my_nonce, hs->peer_nonce, hs->send_key);
	wire_auth_direction_key(hs, hs->peer_nonce, hs->my_nonce, hs->recv_key);
	hs->send_seq = 0;
	wire_auth_proof(hs, hs->my_role, hs->my_replica, hs->my_nonce, hs->peer_nonce,
			auth->proof);
	return 0;
}

int vsr_wire_handshake_check(const vsr_wire_handshake *hs, const vsr_wire_hello *peer,
			     const vsr_wire_auth *auth)
{
	assert(hs->have_peer_nonce);
	uint8_t want[VSR_WIRE_PROOF_SIZE];
	wire_auth_proof(hs, peer->role, peer->replica, hs->peer_nonce, hs->my_nonce, want);
	int same = sodium_memcmp(want, auth->proof, VSR_WIRE_PROOF_SIZE) == 0;
	sodium_memzero(want, sizeof want);
	return same ? 0 : -VSR_WIRE_EMAC;
}

void vsr_wire_mac_compute(const uint8_t key[VSR_WIRE_KEY_SIZE], uint64_t seq,
			  const uint8_t *header, const uint8_t *body, uint32_t body_len,
			  uint8_t mac[VSR_WIRE_MAC_SIZE])
{
	crypto_generichash_state st;
	uint8_t s[8];
	wire_auth_le64(s, seq);
	crypto_generichash_init(&st, key, VSR_WIRE_KEY_SIZE, VSR_WIRE_MAC_SIZE);
	crypto_generichash_update(&st, s, sizeof s);
	crypto_generichash_update(&st, header, VSR_WIRE_HEADER_SIZE);
	crypto_generichash_update(&st, body, body_len);
	crypto_generichash_final(&st, mac, VSR_WIRE_MAC_SIZE);
}

bool vsr_wire_mac_verify(const uint8_t key[VSR_WIRE_KEY_SIZE], uint64_t seq,
			 const uint8_t *header, const uint8_t *body, uint32_t body_len,
			 const uint8_t mac[VSR_WIRE_MAC_SIZE])
{
	uint8_t want[VSR_WIRE_MAC_SIZE];
	vsr_wire_mac_compute(key, seq, header, body, body_len, want);
	return sodium_memcmp(want, mac, VSR_WIRE_MAC_SIZE) == 0;
}

/* ------------------------------------------------------------------------ */
/* One connection.                                                          */

void vsr_wire_conn_auth_init(vsr_wire_conn_auth *a, const uint8_t *key, uint64_t cluster,
			     uint8_t role, uint8_t replica)
{
	memset(a, 0, sizeof *a);
	a->hs.cluster = cluster;
	a->required = key != NULL;
	if (a->required)
		vsr_wire_handshake_init(&a->hs, key, cluster, role, replica);
}

int vsr_wire_conn_auth_send_hello(vsr_wire_conn_auth *a, vsr_buf *out, vsr_wire_hello h)
{
	h.has_nonce = a->required;
	if (a->required)
		memcpy(h.nonce, a->hs.my_nonce, VSR_WIRE_NONCE_SIZE);
	return vsr_wire_encode_hello(out, a->hs.cluster, &h);
}

int vsr_wire_conn_auth_peer_hello(vsr_wire_conn_auth *a, const vsr_wire_hello *h, vsr_buf *out,
				  char *err, size_t err_len)
{
	a->peer_hello = *h;
	a->peer_hello_seen = true;
	if (!a->required)
		return 0;
	vsr_wire_auth auth;
	if (vsr_wire_handshake_peer_hello(&a->hs, h, &auth) != 0) {
		snprintf(err, err_len, "the other end sent no HELLO nonce: it has no key, and this "
				       "end requires authentication");
		return -VSR_WIRE_EMAC;
	}
	int rc = vsr_wire_encode_auth(out, a->hs.cluster, &auth);
	if (rc != 0) {
		snprintf(err, err_len, "cannot encode AUTH: %s", vsr_wire_strerror(rc));
		return rc;
	}
	a->sealing = true;
	return 0;
}

int vsr_wire_conn_auth_peer_auth(vsr_wire_conn_auth *a, const vsr_wire_auth *auth,
				 vsr_wire_reader *reader, char *err, size_t err_len)
{
	/* A HELLO without a nonce was refused (peer_hello): its AUTH has
	 * nothing to be checked against, whatever the caller did next. */
	if (!a->required || !a->peer_hello_seen || !a->hs.have_peer_nonce || a->authenticated) {
		snprintf(err, err_len, "AUTH %s",
			 !a->required          ? "on a connection without a key"
			 : a->authenticated    ? "a second time"
			 : !a->peer_hello_seen ? "before HELLO"
					       : "after a HELLO without a nonce");
		return -VSR_WIRE_EMAC;
	}
	if (vsr_wire_handshake_check(&a->hs, &a->peer_hello, auth) != 0) {
		snprintf(err, err_len, "authentication failed: the other end does not hold "
				       "this cluster's key");
		return -VSR_WIRE_EMAC;
	}
	a->authenticated = true;
	vsr_wire_reader_expect_mac(reader, a->hs.recv_key);
	return 0;
}

bool vsr_wire_conn_auth_ready(const vsr_wire_conn_auth *a)
{
	return !a->required || (a->authenticated && a->sealing);
}

int vsr_wire_conn_auth_seal(vsr_wire_conn_auth *a, vsr_buf *out, size_t frame_start)
{
	if (!a->sealing)
		return 0;
	/* The sequence number is used up only by a frame that was sealed. */
	int rc = vsr_wire_seal(out, frame_start, a->hs.send_key, a->hs.send_seq);
	if (rc == 0)
		a->hs.send_seq++;
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Key files.                                                               */

int vsr_wire_key_load(const char *path, uint8_t key[VSR_WIRE_KEY_SIZE], char *err,
		      size_t err_len)
{
	wire_auth_init();
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, err_len, "cannot read the key file %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "the key file %s is not a regular file", path);
		close(fd);
		return -1;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(err, err_len,
			 "the key file %s is readable by others (mode %03o): chmod 600 it",
			 path, (unsigned)(st.st_mode & 0777));
		close(fd);
		return -1;
	}
	char text[256];
	ssize_t n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, err_len, "cannot read the key file %s: %s", path, strerror(errno));
		return -1;
	}
	text[n] = '\0';
	size_t bin_len = 0;
	const char *end = NULL;
	if (sodium_hex2bin(key, VSR_WIRE_KEY_SIZE, text, (size_t)n, " \t\r\n", &bin_len, &end) != 0 ||
	    bin_len != VSR_WIRE_KEY_SIZE || end == NULL || end[strspn(end, " \t\r\n")] != '\0') {
		sodium_memzero(text, sizeof text);
		snprintf(err, err_len,
			 "the key file %s: expected 64 hexadecimal digits (vsrhost keygen FILE "
			 "writes one)", path);
		return -1;
	}
	sodium_memzero(text, sizeof text);
	return 0;
}

int vsr_wire_key_generate(const char *path, char *err, size_t err_len)
{
	wire_auth_init();
	uint8_t key[VSR_WIRE_KEY_SIZE];
	char hex[2 * VSR_WIRE_KEY_SIZE + 2];
	randombytes_buf(key, sizeof key);
	sodium_bin2hex(hex, sizeof hex, key, sizeof key);
	sodium_memzero(key, sizeof key);
	size_t len = strlen(hex);
	hex[len++] = '\n';
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, err_len, "cannot create %s: %s", path, strerror(errno));
		sodium_memzero(hex, sizeof hex);
		return -1;
	}
	ssize_t w = write(fd, hex, len);
	int saved = errno;
	sodium_memzero(hex, sizeof hex);
	if (w != (ssize_t)len || fsync(fd) != 0) {
		snprintf(err, err_len, "cannot write %s: %s", path,
			 strerror(w < 0 ? saved : errno ? errno : EIO));
		close(fd);
		unlink(path);
		return -1;
	}
	if (close(fd) != 0) {
		snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}
