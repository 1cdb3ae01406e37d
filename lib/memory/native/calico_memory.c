/*
 * calico_memory: glibc's allocator controls for Node, so `calico node` gives freed memory back.
 *
 * Node's Buffers, gRPC frames and JSON text are malloc'd; glibc keeps what they free in its
 * arenas, and its dynamic thresholds (a freed large block raises the mmap threshold to up to
 * 32 MB and the trim threshold to twice that) make it keep ever more (lib/memory/index.ts).
 *   tune(arenaMax, mmapThreshold, trimThreshold) -> boolean: fixes the thresholds (turning off
 *     their dynamic growth) and caps the arenas threads may create; 0 leaves one as it is.
 *   freeBytes() -> number: bytes free inside the arenas (mallinfo2's fordblks), what trim can give.
 *   trim() -> boolean: malloc_trim(0), which returns free pages from every arena, not only the top.
 * Elsewhere than glibc these are no-ops that report false / 0.
 */
#include <node_api.h>
#include <stdbool.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static int32_t arg_int(napi_env env, napi_value v) {
  int32_t n = 0;
  if (napi_get_value_int32(env, v, &n) != napi_ok) n = 0;
  return n;
}

static napi_value tune(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool ok = false;
#ifdef __GLIBC__
  int32_t arenas = argc > 0 ? arg_int(env, argv[0]) : 0;
  int32_t mmap_at = argc > 1 ? arg_int(env, argv[1]) : 0;
  int32_t trim_at = argc > 2 ? arg_int(env, argv[2]) : 0;
  ok = true;
  if (arenas > 0) ok = mallopt(M_ARENA_MAX, arenas) == 1 && ok;
  if (mmap_at > 0) ok = mallopt(M_MMAP_THRESHOLD, mmap_at) == 1 && ok;
  if (trim_at > 0) ok = mallopt(M_TRIM_THRESHOLD, trim_at) == 1 && ok;
#endif
  napi_value r;
  napi_get_boolean(env, ok, &r);
  return r;
}

static napi_value free_bytes(napi_env env, napi_callback_info info) {
  (void)info;
  double n = 0;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  n = (double)mi.fordblks;
#endif
  napi_value r;
  napi_create_double(env, n, &r);
  return r;
}

static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  bool released = false;
#ifdef __GLIBC__
  released = malloc_trim(0) == 1;
#endif
  napi_value r;
  napi_get_boolean(env, released, &r);
  return r;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "tune", NAPI_AUTO_LENGTH, tune, NULL, &fn);
  napi_set_named_property(env, exports, "tune", fn);
  napi_create_function(env, "freeBytes", NAPI_AUTO_LENGTH, free_bytes, NULL, &fn);
  napi_set_named_property(env, exports, "freeBytes", fn);
  napi_create_function(env, "trim", NAPI_AUTO_LENGTH, trim, NULL, &fn);
  napi_set_named_property(env, exports, "trim", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
