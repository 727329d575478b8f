/* lazy_hiredis.h -- <hiredis/hiredis.h>, <hiredis/async.h> and the libuv
 * adapter through lazily loaded pointers (see lazy.h). Only the worker and
 * the job commands use them. Include this header, never the hiredis ones:
 * the adapter's functions (static, in its header) call the library too. */
#ifndef AD_LAZY_HIREDIS_H
#define AD_LAZY_HIREDIS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "base/lazy.h"

#define AD_HIREDIS_SYMBOLS(X) \
    X(freeReplyObject) \
    X(redisAsyncCommandArgv) \
    X(redisAsyncConnect) \
    X(redisAsyncConnectUnix) \
    X(redisAsyncFree) \
    X(redisAsyncHandleRead) \
    X(redisAsyncHandleWrite) \
    X(redisAsyncSetConnectCallback) \
    X(redisAsyncSetDisconnectCallback) \
    X(redisCommandArgv) \
    X(redisConnectUnixWithTimeout) \
    X(redisConnectWithTimeout) \
    X(redisEnableKeepAlive) \
    X(redisFree) \
    X(redisSetTimeout)

#ifndef AD_LAZY_DECLARE
#define AD_LAZY_DECLARE(f) extern __typeof__(f) *ad_lazy_##f;
#endif
AD_HIREDIS_SYMBOLS(AD_LAZY_DECLARE)

#ifndef AD_LAZY_NO_REDIRECT
#define freeReplyObject (*ad_lazy_freeReplyObject)
#define redisAsyncCommandArgv (*ad_lazy_redisAsyncCommandArgv)
#define redisAsyncConnect (*ad_lazy_redisAsyncConnect)
#define redisAsyncConnectUnix (*ad_lazy_redisAsyncConnectUnix)
#define redisAsyncFree (*ad_lazy_redisAsyncFree)
#define redisAsyncHandleRead (*ad_lazy_redisAsyncHandleRead)
#define redisAsyncHandleWrite (*ad_lazy_redisAsyncHandleWrite)
#define redisAsyncSetConnectCallback (*ad_lazy_redisAsyncSetConnectCallback)
#define redisAsyncSetDisconnectCallback (*ad_lazy_redisAsyncSetDisconnectCallback)
#define redisCommandArgv (*ad_lazy_redisCommandArgv)
#define redisConnectUnixWithTimeout (*ad_lazy_redisConnectUnixWithTimeout)
#define redisConnectWithTimeout (*ad_lazy_redisConnectWithTimeout)
#define redisEnableKeepAlive (*ad_lazy_redisEnableKeepAlive)
#define redisFree (*ad_lazy_redisFree)
#define redisSetTimeout (*ad_lazy_redisSetTimeout)
#endif

#endif /* AD_LAZY_HIREDIS_H */
