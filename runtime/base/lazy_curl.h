/* lazy_curl.h -- <curl/curl.h> through lazily loaded pointers (see lazy.h). */
#ifndef AD_LAZY_CURL_H
#define AD_LAZY_CURL_H

/* curl's type-checking macros for GCC call the library's own symbols; the
 * redirections below replace them (the option types are not checked). */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include "base/lazy.h"

#define AD_CURL_SYMBOLS(X) \
    X(curl_easy_cleanup) \
    X(curl_easy_getinfo) \
    X(curl_easy_init) \
    X(curl_easy_pause) \
    X(curl_easy_setopt) \
    X(curl_easy_strerror) \
    X(curl_getdate) \
    X(curl_global_cleanup) \
    X(curl_global_init) \
    X(curl_multi_add_handle) \
    X(curl_multi_assign) \
    X(curl_multi_cleanup) \
    X(curl_multi_info_read) \
    X(curl_multi_init) \
    X(curl_multi_remove_handle) \
    X(curl_multi_setopt) \
    X(curl_multi_socket_action) \
    X(curl_slist_append) \
    X(curl_slist_free_all)

#ifndef AD_LAZY_DECLARE
#define AD_LAZY_DECLARE(f) extern __typeof__(f) *ad_lazy_##f;
#endif
AD_CURL_SYMBOLS(AD_LAZY_DECLARE)

#ifndef AD_LAZY_NO_REDIRECT
#define curl_easy_cleanup (*ad_lazy_curl_easy_cleanup)
#undef curl_easy_getinfo
#define curl_easy_getinfo(h, info, arg) ((*ad_lazy_curl_easy_getinfo)(h, info, arg))
#define curl_easy_init (*ad_lazy_curl_easy_init)
#define curl_easy_pause (*ad_lazy_curl_easy_pause)
#undef curl_easy_setopt
#define curl_easy_setopt(h, opt, param) ((*ad_lazy_curl_easy_setopt)(h, opt, param))
#define curl_easy_strerror (*ad_lazy_curl_easy_strerror)
#define curl_getdate (*ad_lazy_curl_getdate)
#define curl_global_cleanup (*ad_lazy_curl_global_cleanup)
#define curl_global_init (*ad_lazy_curl_global_init)
#define curl_multi_add_handle (*ad_lazy_curl_multi_add_handle)
#define curl_multi_assign (*ad_lazy_curl_multi_assign)
#define curl_multi_cleanup (*ad_lazy_curl_multi_cleanup)
#define curl_multi_info_read (*ad_lazy_curl_multi_info_read)
#define curl_multi_init (*ad_lazy_curl_multi_init)
#define curl_multi_remove_handle (*ad_lazy_curl_multi_remove_handle)
#undef curl_multi_setopt
#define curl_multi_setopt(h, opt, param) ((*ad_lazy_curl_multi_setopt)(h, opt, param))
#define curl_multi_socket_action (*ad_lazy_curl_multi_socket_action)
#define curl_slist_append (*ad_lazy_curl_slist_append)
#define curl_slist_free_all (*ad_lazy_curl_slist_free_all)
#endif

#endif /* AD_LAZY_CURL_H */
