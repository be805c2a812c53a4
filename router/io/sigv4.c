/* AWS Signature Version 4 (see sigv4.h), with OpenSSL's SHA-256. */
#include "sigv4.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "buf.h"
#include "dynlib.h"

#define MAX_SIGNED 24

/* libcrypto, loaded on the first signature (see dynlib.h); libcurl has it mapped already */
static struct crypto_api {
	EVP_MD *(*EVP_MD_fetch)(OSSL_LIB_CTX *, const char *, const char *);
	EVP_MD_CTX *(*EVP_MD_CTX_new)(void);
	void (*EVP_MD_CTX_free)(EVP_MD_CTX *);
	int (*EVP_DigestInit_ex)(EVP_MD_CTX *, const EVP_MD *, ENGINE *);
	int (*EVP_DigestUpdate)(EVP_MD_CTX *, const void *, size_t);
	int (*EVP_DigestFinal_ex)(EVP_MD_CTX *, unsigned char *, unsigned int *);
} X;

#define SYM(f) {#f, offsetof(struct crypto_api, f)}
static const struct kr_dynsym crypto_syms[] = {SYM(EVP_MD_fetch), SYM(EVP_MD_CTX_new),
					       SYM(EVP_MD_CTX_free), SYM(EVP_DigestInit_ex),
					       SYM(EVP_DigestUpdate), SYM(EVP_DigestFinal_ex)};
#undef SYM

static struct kr_dynlib crypto = {.soname = "libcrypto.so.3",
				  .syms = crypto_syms,
				  .nsyms = sizeof crypto_syms / sizeof crypto_syms[0],
				  .table = &X};

/* SHA-256, fetched once: OpenSSL 3's one-shot SHA256() and HMAC() look the algorithm up in
 * its provider tables on every call, which cost as much as hashing a request's body */
static EVP_MD *sha256_md;
static _Thread_local EVP_MD_CTX *md_ctx;

enum kr_err kr_sigv4_load(char *err)
{
	enum kr_err e = kr_dynlib_load(&crypto, err);
	if (e || sha256_md)
		return e;
	sha256_md = X.EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!sha256_md)
		return kr_errf(err, KR_ERR_IO, "libcrypto.so.3 has no SHA-256");
	return KR_OK;
}

static void hex(const unsigned char *d, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * n] = 0;
}

/* The SHA-256 of a's a_len bytes followed by b's b_len. */
static bool sha256_2(const void *a, size_t a_len, const void *b, size_t b_len,
		     unsigned char out[32])
{
	if (!md_ctx && !(md_ctx = X.EVP_MD_CTX_new()))
		return false;
	unsigned int len = 32;
	return X.EVP_DigestInit_ex(md_ctx, sha256_md, NULL) &&
	       X.EVP_DigestUpdate(md_ctx, a, a_len) && (!b_len || X.EVP_DigestUpdate(md_ctx, b, b_len)) &&
	       X.EVP_DigestFinal_ex(md_ctx, out, &len);
}

static bool sha256_hex(const void *p, size_t n, char out[65])
{
	unsigned char d[32];
	if (!sha256_2(p, n, NULL, 0, d))
		return false;
	hex(d, sizeof d, out);
	return true;
}

/* HMAC-SHA256 (RFC 2104) */
static bool hmac(const void *key, size_t klen, const void *msg, size_t n, unsigned char out[32])
{
	unsigned char k[64] = {0}, pad[64], inner[32];
	if (klen > sizeof k) {
		if (!sha256_2(key, klen, NULL, 0, k))
			return false;
	} else {
		memcpy(k, key, klen);
	}
	for (size_t i = 0; i < sizeof pad; i++)
		pad[i] = k[i] ^ 0x36;
	if (!sha256_2(pad, sizeof pad, msg, n, inner))
		return false;
	for (size_t i = 0; i < sizeof pad; i++)
		pad[i] = k[i] ^ 0x5c;
	return sha256_2(pad, sizeof pad, inner, sizeof inner, out);
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Appends s[0..n) percent-decoded, then encoded as RFC 3986 says. */
static bool reencode(struct kr_buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%' && i + 2 < n && unhex(s[i + 1]) >= 0 && unhex(s[i + 2]) >= 0) {
			c = (unsigned char)(unhex(s[i + 1]) << 4 | unhex(s[i + 2]));
			i += 2;
		}
		if (!kr_buf_urlencode(b, &c, 1))
			return false;
	}
	return true;
}

struct param {
	struct kr_buf k, v;
};

static int param_cmp(const void *a, const void *b)
{
	const struct param *x = a, *y = b;
	int c = strcmp(x->k.p ? x->k.p : "", y->k.p ? y->k.p : "");
	return c ? c : strcmp(x->v.p ? x->v.p : "", y->v.p ? y->v.p : "");
}

/* The canonical query string of query (n bytes). */
static bool canonical_query(struct kr_buf *out, const char *q, size_t n)
{
	size_t count = 0;
	for (size_t i = 0; i < n; i++)
		count += q[i] == '&';
	struct param *ps = calloc(count + 1, sizeof *ps);
	if (!ps)
		return false;
	size_t np = 0;
	bool ok = true;
	const char *p = q, *end = q + n;
	while (ok && p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		if (!amp)
			amp = end;
		if (amp > p) {
			const char *eq = memchr(p, '=', (size_t)(amp - p));
			const char *ke = eq ? eq : amp;
			struct param *x = &ps[np++];
			ok = reencode(&x->k, p, (size_t)(ke - p)) && kr_buf_append(&x->k, "", 0) &&
			     (eq ? reencode(&x->v, eq + 1, (size_t)(amp - eq - 1)) : true) &&
			     kr_buf_append(&x->v, "", 0);
		}
		p = amp + 1;
	}
	if (ok)
		qsort(ps, np, sizeof *ps, param_cmp);
	for (size_t i = 0; ok && i < np; i++)
		ok = (!i || kr_buf_puts(out, "&")) && kr_buf_puts(out, ps[i].k.p ? ps[i].k.p : "") &&
		     kr_buf_puts(out, "=") && kr_buf_puts(out, ps[i].v.p ? ps[i].v.p : "");
	for (size_t i = 0; i < np; i++) {
		kr_buf_free(&ps[i].k);
		kr_buf_free(&ps[i].v);
	}
	free(ps);
	return ok;
}

struct hdr {
	char name[64];
	const char *v;
	size_t vlen;
};

static int hdr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct hdr *)a)->name, ((const struct hdr *)b)->name);
}

static bool add_hdr(struct hdr *hs, size_t *n, const char *name, size_t nlen, const char *v,
		    size_t vlen)
{
	if (*n >= MAX_SIGNED || nlen >= sizeof hs->name)
		return false;
	struct hdr *h = &hs[(*n)++];
	for (size_t i = 0; i < nlen; i++)
		h->name[i] = (char)tolower((unsigned char)name[i]);
	h->name[nlen] = 0;
	h->v = v;
	h->vlen = vlen;
	return true;
}

/* Appends a header value trimmed, with runs of blanks as one space. */
static bool put_value(struct kr_buf *b, const char *v, size_t n)
{
	while (n && isspace((unsigned char)*v))
		v++, n--;
	while (n && isspace((unsigned char)v[n - 1]))
		n--;
	for (size_t i = 0; i < n; i++) {
		if (isspace((unsigned char)v[i])) {
			while (i + 1 < n && isspace((unsigned char)v[i + 1]))
				i++;
			if (!kr_buf_append(b, " ", 1))
				return false;
		} else if (!kr_buf_append(b, &v[i], 1)) {
			return false;
		}
	}
	return true;
}

/* The derived signing key of a day, region and service (four HMACs), kept for the next
 * requests with the same secret, as the SDKs do. */
static _Thread_local struct {
	bool valid;
	char day[9], region[64], service[32], secret[256];
	unsigned char key[32];
} key_cache;

static bool signing_key(const struct kr_sigv4_request *r, const char *day, unsigned char k[32])
{
	size_t sl = strlen(r->secret_key);
	bool cacheable = sl < sizeof key_cache.secret && strlen(r->region) < sizeof key_cache.region &&
			 strlen(r->service) < sizeof key_cache.service;
	if (cacheable && key_cache.valid && !strcmp(key_cache.day, day) &&
	    !strcmp(key_cache.region, r->region) && !strcmp(key_cache.service, r->service) &&
	    !strcmp(key_cache.secret, r->secret_key)) {
		memcpy(k, key_cache.key, 32);
		return true;
	}
	struct kr_buf key = {0};
	bool ok = kr_buf_puts(&key, "AWS4") && kr_buf_puts(&key, r->secret_key) &&
		  hmac(key.p, key.len, day, 8, k) && hmac(k, 32, r->region, strlen(r->region), k) &&
		  hmac(k, 32, r->service, strlen(r->service), k) &&
		  hmac(k, 32, "aws4_request", 12, k);
	if (key.p)
		explicit_bzero(key.p, key.len);
	kr_buf_free(&key);
	explicit_bzero(&key_cache, sizeof key_cache);
	if (ok && cacheable) {
		memcpy(key_cache.day, day, 9);
		memcpy(key_cache.region, r->region, strlen(r->region) + 1);
		memcpy(key_cache.service, r->service, strlen(r->service) + 1);
		memcpy(key_cache.secret, r->secret_key, sl + 1);
		memcpy(key_cache.key, k, 32);
		key_cache.valid = true;
	}
	return ok;
}

bool kr_sigv4_sign(const struct kr_sigv4_request *r, char *lines[3])
{
	lines[0] = lines[1] = lines[2] = NULL;
	char err[KR_ERRBUF];
	if (kr_sigv4_load(err) != KR_OK)
		return false;
	const char *scheme_end = strstr(r->url, "://");
	if (!scheme_end)
		return false;
	bool https = (size_t)(scheme_end - r->url) == 5 && strncasecmp(r->url, "https", 5) == 0;
	const char *host = scheme_end + 3;
	size_t hostlen = strcspn(host, "/?#");
	const char *path = host + hostlen;
	size_t pathlen = strcspn(path, "?#");
	const char *query = path[pathlen] == '?' ? path + pathlen + 1 : "";
	size_t querylen = strcspn(query, "#");
	/* the Host header as curl sends it: without the scheme's default port */
	const char *colon = NULL;
	for (const char *c = host + hostlen; c > host; c--)
		if (c[-1] == ':') {
			colon = c - 1;
			break;
		} else if (c[-1] == ']') {
			break;
		}
	if (colon && ((https && host + hostlen - colon == 4 && !memcmp(colon, ":443", 4)) ||
		      (!https && host + hostlen - colon == 3 && !memcmp(colon, ":80", 3))))
		hostlen = (size_t)(colon - host);

	char amzdate[17], day[9];
	struct tm tm;
	gmtime_r(&r->now, &tm);
	strftime(amzdate, sizeof amzdate, "%Y%m%dT%H%M%SZ", &tm);
	memcpy(day, amzdate, 8);
	day[8] = 0;

	struct hdr hs[MAX_SIGNED];
	size_t nh = 0;
	bool ok = add_hdr(hs, &nh, "host", 4, host, hostlen) &&
		  add_hdr(hs, &nh, "x-amz-date", 10, amzdate, 16);
	bool token = r->session_token && *r->session_token;
	if (ok && token)
		ok = add_hdr(hs, &nh, "x-amz-security-token", 20, r->session_token,
			     strlen(r->session_token));
	for (const char *const *l = r->headers; ok && l && *l; l++) {
		const char *c = strchr(*l, ':');
		if (!c)
			continue;
		size_t nl = (size_t)(c - *l);
		const char *v = c + 1;
		size_t vl = strlen(v);
		bool amz = nl > 6 && strncasecmp(*l, "x-amz-", 6) == 0;
		bool ctype = nl == 12 && strncasecmp(*l, "content-type", 12) == 0;
		/* an empty value removes the header in curl: nothing is sent, nothing signed */
		if ((amz || ctype) && strspn(v, " \t") < vl)
			ok = add_hdr(hs, &nh, *l, nl, v, vl);
	}
	if (!ok)
		return false;
	qsort(hs, nh, sizeof *hs, hdr_cmp);

	char payload[65];
	if (!sha256_hex(r->body ? r->body : "", r->body ? r->body_len : 0, payload))
		return false;
	struct kr_buf cr = {0}, signed_names = {0}, sts = {0}, auth = {0};
	ok = kr_buf_puts(&cr, r->method) && kr_buf_puts(&cr, "\n");
	/* the path encoded once more, as AWS does for every service but S3 */
	if (ok && !pathlen)
		ok = kr_buf_puts(&cr, "/");
	for (size_t i = 0; ok && i < pathlen; i++)
		ok = path[i] == '/' ? kr_buf_append(&cr, "/", 1)
				    : kr_buf_urlencode(&cr, &path[i], 1);
	ok = ok && kr_buf_puts(&cr, "\n") && canonical_query(&cr, query, querylen) &&
	     kr_buf_puts(&cr, "\n");
	for (size_t i = 0; ok && i < nh; i++) {
		ok = kr_buf_puts(&cr, hs[i].name) && kr_buf_puts(&cr, ":") &&
		     put_value(&cr, hs[i].v, hs[i].vlen) && kr_buf_puts(&cr, "\n") &&
		     (!i || kr_buf_puts(&signed_names, ";")) &&
		     kr_buf_puts(&signed_names, hs[i].name);
	}
	ok = ok && kr_buf_puts(&cr, "\n") && kr_buf_puts(&cr, signed_names.p) &&
	     kr_buf_puts(&cr, "\n") && kr_buf_puts(&cr, payload);
	char crhash[65];
	ok = ok && sha256_hex(cr.p, cr.len, crhash);
	char scope[160];
	snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", day, r->region, r->service);
	ok = ok && kr_buf_puts(&sts, "AWS4-HMAC-SHA256\n") && kr_buf_puts(&sts, amzdate) &&
	     kr_buf_puts(&sts, "\n") && kr_buf_puts(&sts, scope) && kr_buf_puts(&sts, "\n") &&
	     kr_buf_puts(&sts, crhash);
	unsigned char k[32], sig[32];
	ok = ok && signing_key(r, day, k) && hmac(k, 32, sts.p, sts.len, sig);
	char sighex[65];
	hex(sig, 32, sighex);
	ok = ok && kr_buf_puts(&auth, "Authorization: AWS4-HMAC-SHA256 Credential=") &&
	     kr_buf_puts(&auth, r->access_key_id) && kr_buf_puts(&auth, "/") &&
	     kr_buf_puts(&auth, scope) && kr_buf_puts(&auth, ", SignedHeaders=") &&
	     kr_buf_puts(&auth, signed_names.p) && kr_buf_puts(&auth, ", Signature=") &&
	     kr_buf_puts(&auth, sighex);
	explicit_bzero(k, sizeof k);
	kr_buf_free(&cr);
	kr_buf_free(&signed_names);
	kr_buf_free(&sts);
	if (ok) {
		ok = asprintf(&lines[0], "X-Amz-Date: %s", amzdate) >= 0;
		if (!ok)
			lines[0] = NULL;
	}
	if (ok && token && asprintf(&lines[1], "X-Amz-Security-Token: %s", r->session_token) < 0) {
		lines[1] = NULL;
		ok = false;
	}
	if (ok) {
		lines[2] = auth.p;
		auth.p = NULL;
	}
	kr_buf_free(&auth);
	if (!ok)
		kr_sigv4_free(lines);
	return ok;
}

void kr_sigv4_free(char *lines[3])
{
	for (int i = 0; i < 3; i++) {
		if (lines[i])
			explicit_bzero(lines[i], strlen(lines[i]));
		free(lines[i]);
		lines[i] = NULL;
	}
}

void kr_sigv4_thread_end(void)
{
	if (md_ctx)
		X.EVP_MD_CTX_free(md_ctx);
	md_ctx = NULL;
	explicit_bzero(&key_cache, sizeof key_cache);
}
