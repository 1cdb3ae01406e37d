/*
 * calico_nft: libnftables for Node, so each firewall change is one nft transaction in this
 * process (no nft process forked per change). One function:
 *   run(commands: string, flags: number) -> Promise<string>
 * runs `commands` (nft's own syntax, as in `nft -f`) as one batch, which the kernel commits or
 * rejects as a whole, and resolves with nft's output (listings) or rejects with its error text.
 * flags: 1 = JSON output, 2 = dry run (the kernel checks the batch and commits nothing).
 * The work runs on libuv's thread pool; one mutex serialises calls on the process's context
 * (libnftables contexts are not thread safe). The context lives as long as the process.
 */
#include <node_api.h>
#include <nftables/libnftables.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define FLAG_JSON 1u
#define FLAG_DRY_RUN 2u

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct nft_ctx *ctx;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *commands;
  unsigned flags;
  int rc;
  char *out;
  char *err;
} job_t;

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

static void execute(napi_env env, void *data) {
  (void)env;
  job_t *j = data;
  pthread_mutex_lock(&lock);
  if (!ctx) {
    ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (ctx) {
      nft_ctx_buffer_output(ctx);
      nft_ctx_buffer_error(ctx);
    }
  }
  if (!ctx) {
    j->rc = -1;
    j->out = dup_or_empty(NULL);
    j->err = strdup("nft_ctx_new failed");
  } else {
    nft_ctx_output_set_flags(ctx, (j->flags & FLAG_JSON) ? NFT_CTX_OUTPUT_JSON : 0);
    nft_ctx_set_dry_run(ctx, (j->flags & FLAG_DRY_RUN) != 0);
    j->rc = nft_run_cmd_from_buffer(ctx, j->commands);
    /* Reading a buffer hands it over and starts a fresh one for the next call. */
    j->out = dup_or_empty(nft_ctx_get_output_buffer(ctx));
    j->err = dup_or_empty(nft_ctx_get_error_buffer(ctx));
    nft_ctx_set_dry_run(ctx, false);
  }
  pthread_mutex_unlock(&lock);
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *j = data;
  napi_value v;
  if (status == napi_ok && j->rc == 0) {
    napi_create_string_utf8(env, j->out, NAPI_AUTO_LENGTH, &v);
    napi_resolve_deferred(env, j->deferred, v);
  } else {
    napi_value msg;
    const char *text = j->err && j->err[0] ? j->err : "nft transaction failed";
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_reject_deferred(env, j->deferred, v);
  }
  napi_delete_async_work(env, j->work);
  free(j->commands);
  free(j->out);
  free(j->err);
  free(j);
}

static napi_value run(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], promise, name;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  size_t len;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "run(commands: string, flags?: number)");
    return NULL;
  }
  job_t *j = calloc(1, sizeof *j);
  if (j) j->commands = malloc(len + 1);
  if (!j || !j->commands) {
    free(j);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[0], j->commands, len + 1, &len);
  uint32_t flags = 0;
  if (argc > 1) napi_get_value_uint32(env, argv[1], &flags);
  j->flags = flags;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "calico_nft.run", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "run", NAPI_AUTO_LENGTH, run, NULL, &fn);
  napi_set_named_property(env, exports, "run", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
