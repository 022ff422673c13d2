/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The API listener's owners: reads the tokens file (again when its inode, size or mtime change,
 * looked at no more than once a second, when a request comes), checks each request's bearer
 * secret against it and answers 401/403 in the endpoint's error form. The decisions are
 * common/api-tokens.c's (the scope of a request: shim-request.c); this file does the I/O. docs/api-auth.md. */
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "evbuffer-util.h"
#include "log.h"
#include "shimd-audit.h"
#include "shimd-auth.h"
#include "shimd-errors.h"

_Static_assert(API_TOKEN_MODEL_NAME_MAX == SHIM_MODEL_NAME_MAX, "a token may name any model the shim takes");

typedef struct ShimAuth {
        ApiAuthMode mode;
        bool required;
        char *path;
        const char *api_address;

        ApiTokens *tokens;     /* NULL while there is no readable file: every request is refused */
        /* What the table was read from, to notice a change. */
        bool have_stat;
        struct stat st;
        int last_error;         /* why the file was not read last time (logged once), 0 if it was */
        usec_t checked_at;

        uint64_t rejected_unauthorized;
} ShimAuth;

static ShimAuth auth = { .mode = API_AUTH_AUTO };

int shim_auth_setup(const MyceliaConfig *config) {
        ApiAuthMode mode = api_auth_mode_from_string(config->api_auth);

        if (mode < 0)
                return log_error_errno(EINVAL, "Invalid [shim] api_auth '%s' (--api-auth): want auto, token or none.",
                                       strempty(config->api_auth));
        auth.mode = mode;
        free(auth.path);
        auth.path = strdup(strempty(config->tokens_file));
        if (!auth.path)
                return log_oom();
        return 0;
}

void shim_auth_done(void) {
        auth.tokens = api_tokens_free(auth.tokens);
        free(auth.path);
        auth = (ShimAuth) { .mode = API_AUTH_AUTO };
}

uint64_t shim_auth_rejected_unauthorized(void) {
        return auth.rejected_unauthorized;
}

static void auth_problem(unsigned line, const char *problem, void *userdata) {
        log_warning("%s:%u: %s; the line is ignored.", auth.path, line, problem);
}

/* The file could not be taken (error): every request is refused until it can. Logged when the
 * reason changes, not at each look. */
static int auth_unloaded(int error) {
        auth.tokens = api_tokens_free(auth.tokens);
        auth.have_stat = false;
        if (error == auth.last_error)
                return error;
        auth.last_error = error;
        if (error == -ENOENT)
                log_warning("No tokens file %s: the API on %s refuses every request (401) until there is one. "
                            "Make a token with 'myceliactl token add NAME' (or set [shim] api_auth, docs/api-auth.md).",
                            auth.path, auth.api_address);
        else if (error == -EPERM)
                log_error("%s is writable by others: not read, the API on %s refuses every request (401). "
                          "chmod o-w it (myceliactl writes it 0640).", auth.path, auth.api_address);
        else if (error == -EFBIG)
                log_error("%s is larger than %u bytes: not read, the API on %s refuses every request (401).",
                          auth.path, API_TOKENS_FILE_MAX, auth.api_address);
        else
                log_warning_errno(error, "Failed to read the tokens file %s: %m. The API on %s refuses every request "
                                  "(401) until it can be read.", auth.path, auth.api_address);
        return error;
}

static bool auth_same_file(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static int auth_read(int fd, const struct stat *st, char **ret, size_t *ret_size) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;

        text = malloc((size_t) st->st_size + 1);
        if (!text)
                return -ENOMEM;
        /* Read to the end, but never past what was stat()ed plus one byte: a file growing under
         * us is read again at the next look. */
        while (size <= (size_t) st->st_size) {
                ssize_t n = read(fd, text + size, (size_t) st->st_size + 1 - size);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        *ret = TAKE_PTR(text);
        *ret_size = MIN(size, (size_t) st->st_size);
        return 0;
}

static int auth_load(void) {
        _cleanup_(api_tokens_freep) ApiTokens *tokens = NULL;
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        size_t size = 0;
        int r;

        fd = open(auth.path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return auth_unloaded(-errno);
        if (fstat(fd, &st) < 0)
                return auth_unloaded(-errno);
        if (auth.have_stat && auth_same_file(&st, &auth.st))
                return 0;
        if (!S_ISREG(st.st_mode))
                return auth_unloaded(-EISDIR);
        if (st.st_mode & S_IWOTH)
                return auth_unloaded(-EPERM);
        if (st.st_size > (off_t) API_TOKENS_FILE_MAX)
                return auth_unloaded(-EFBIG);
        r = auth_read(fd, &st, &text, &size);
        if (r < 0)
                return auth_unloaded(r);
        r = api_tokens_parse(text, size, auth_problem, NULL, &tokens);
        if (r < 0)
                return auth_unloaded(r);

        api_tokens_free(auth.tokens);
        auth.tokens = TAKE_PTR(tokens);
        auth.st = st;
        auth.have_stat = true;
        auth.last_error = 0;
        log_info("Read %zu token%s from %s.", auth.tokens->n, auth.tokens->n == 1 ? "" : "s", auth.path);
        return 0;
}

/* At most once a second, and only when a request needs the table: a revoked token stops working
 * within a second of the file's change, without a restart. */
static void auth_refresh(void) {
        usec_t now = now_usec();
        struct stat st;

        if (auth.checked_at != 0 && now - auth.checked_at < USEC_PER_SEC)
                return;
        auth.checked_at = now;
        if (stat(auth.path, &st) < 0) {
                (void) auth_unloaded(-errno);
                return;
        }
        if (auth.have_stat && auth_same_file(&st, &auth.st))
                return;
        (void) auth_load();
}

int shim_auth_start(Manager *m) {
        auth.api_address = m->api.address;
        auth.required = api_auth_required(auth.mode, m->api.address);
        if (auth.required) {
                log_info("The API on %s needs a bearer token ([shim] api_auth=%s); tokens from %s.", m->api.address,
                         api_auth_mode_to_string(auth.mode), auth.path);
                auth.checked_at = 0;
                auth_refresh();
        } else if (api_address_is_loopback(m->api.address) > 0)
                log_info("The API on %s is open to local clients, as Ollama's is ([shim] api_auth=%s).",
                         m->api.address, api_auth_mode_to_string(auth.mode));
        else
                log_notice("The API on %s is open to anyone who reaches it: [shim] api_auth=none.", m->api.address);
        return 0;
}

const char *shim_auth_request_token(struct evhttp_request *req) {
        return evhttp_find_header(evhttp_request_get_input_headers(req), API_TOKEN_HEADER);
}

static void auth_input_header_remove_all(struct evhttp_request *req, const char *name) {
        struct evkeyvalq *in = evhttp_request_get_input_headers(req);

        while (evhttp_remove_header(in, name) == 0)
                ;
}

static ShimErrorForm auth_error_form(const ShimRequestClass *cls) {
        return cls->api == SHIM_API_OPENAI ? SHIM_ERROR_OPENAI : SHIM_ERROR_JSON;
}

static int auth_unauthorized(struct evhttp_request *req, const ShimRequestClass *cls, bool presented) {
        auth.rejected_unauthorized++;
        shim_audit_request(SHIM_LISTENER_API, req, 401, NULL, NULL, now_usec());
        log_debug("%s %s: %s bearer token, 401.", shim_method_name(evhttp_request_get_command(req)),
                  evhttp_request_get_uri(req), presented ? "unknown" : "no");
        /* RFC 6750 3.1: no error code when no credentials came at all. */
        shim_reply_error_with_header(req, 401, auth_error_form(cls), "unauthorized", false, "WWW-Authenticate",
                                     presented ? "Bearer error=\"invalid_token\"" : "Bearer");
        return -EACCES;
}

static int auth_forbidden(struct evhttp_request *req, const ShimRequestClass *cls, const char *model,
                          const char *message) {
        log_debug("%s: 403, %s.", evhttp_request_get_uri(req), message);
        shim_audit_request(SHIM_LISTENER_API, req, 403, model, NULL, now_usec());
        shim_reply_error(req, 403, auth_error_form(cls), message, false);
        return -EACCES;
}

/* A token restricted to models: what the request asks must be one of them. 0 or answered. */
static int auth_check_scope(struct evhttp_request *req, const ShimRequestClass *cls, const ApiToken *t,
                            ShimTokenScope scope) {
        struct evbuffer *body = evhttp_request_get_input_buffer(req);
        struct iovec small[16], *vec, *heap = NULL;
        _cleanup_free_ char *model = NULL;
        char message[SHIM_MODEL_NAME_MAX + 160];
        int n;

        if (t->n_models == 0 || (scope != SHIM_TOKEN_SCOPE_MANAGE && scope != SHIM_TOKEN_SCOPE_MODEL))
                return 0;
        if (scope == SHIM_TOKEN_SCOPE_MANAGE) {
                char target[256];

                snprintf(target, sizeof(target), "%s", evhttp_request_get_uri(req));
                target[strcspn(target, "?")] = '\0';
                snprintf(message, sizeof(message), "token '%s' may not use %s %s: it is restricted to models", t->name,
                         shim_method_name(evhttp_request_get_command(req)), target);
                return auth_forbidden(req, cls, NULL, message);
        }
        n = evbuffer_iovecs(body, small, ELEMENTSOF(small), &vec, &heap);
        if (n > 0)
                (void) shim_request_extract_model(vec, (size_t) n, &model);
        free(heap);
        if (n < 0) {
                log_oom();
                shim_reply_error(req, 500, auth_error_form(cls), "out of memory", true);
                return -ENOMEM;
        }
        if (!model) {
                snprintf(message, sizeof(message), "token '%s' may only use its models: the request names none "
                         "in \"model\"", t->name);
                return auth_forbidden(req, cls, NULL, message);
        }
        if (!api_token_allows_model(t, model)) {
                snprintf(message, sizeof(message), "token '%s' may not use model '%s'", t->name, model);
                return auth_forbidden(req, cls, model, message);
        }
        return 0;
}

int shim_auth_request(Manager *m, ShimListenerKind kind, struct evhttp_request *req, const ShimRequestClass *cls,
                      char token[static API_TOKEN_NAME_MAX + 1]) {
        const char *secret, *value;
        uint8_t hash[API_TOKEN_HASH_SIZE];
        const ApiToken *t;
        ShimTokenScope scope;
        size_t len;
        int r;

        token[0] = '\0';
        if (kind == SHIM_LISTENER_MESH) {
                /* A peer's, behind its mesh authenticator: only a well-formed name is taken. */
                value = shim_auth_request_token(req);
                if (api_token_name_valid(value))
                        memcpy(token, value, strlen(value) + 1);
                return 0;
        }

        /* Only this file says which token a request on this listener carries. */
        auth_input_header_remove_all(req, API_TOKEN_HEADER);
        if (!auth.required)
                return 0;
        scope = shim_token_scope(shim_method_name(evhttp_request_get_command(req)), evhttp_request_get_uri(req));
        if (scope == SHIM_TOKEN_SCOPE_OPEN)
                return 0;

        auth_refresh();
        r = api_token_bearer_parse(evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization"), &secret, &len);
        if (r < 0)
                return auth_unauthorized(req, cls, r != -ENOENT);
        api_token_hash(secret, len, hash);
        t = api_tokens_find(auth.tokens, hash);
        if (!t)
                return auth_unauthorized(req, cls, true);
        /* Known from here on, for the audit trail of a 403 too. */
        (void) evhttp_add_header(evhttp_request_get_input_headers(req), API_TOKEN_HEADER, t->name);
        r = auth_check_scope(req, cls, t, scope);
        if (r < 0)
                return r;
        memcpy(token, t->name, strlen(t->name) + 1);
        return 0;
}
