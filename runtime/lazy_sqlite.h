/* lazy_sqlite.h -- <sqlite3.h> through lazily loaded pointers (see lazy.h). */
#ifndef AD_LAZY_SQLITE_H
#define AD_LAZY_SQLITE_H

#include <sqlite3.h>

#include "lazy.h"

#define AD_SQLITE_SYMBOLS(X)                                                                       \
    X(sqlite3_bind_double)                                                                         \
    X(sqlite3_bind_int)                                                                            \
    X(sqlite3_bind_int64)                                                                          \
    X(sqlite3_bind_null)                                                                           \
    X(sqlite3_bind_text)                                                                           \
    X(sqlite3_busy_timeout)                                                                        \
    X(sqlite3_close)                                                                               \
    X(sqlite3_column_bytes)                                                                        \
    X(sqlite3_column_double)                                                                       \
    X(sqlite3_column_int)                                                                          \
    X(sqlite3_column_int64)                                                                        \
    X(sqlite3_column_text)                                                                         \
    X(sqlite3_column_type)                                                                         \
    X(sqlite3_errmsg)                                                                              \
    X(sqlite3_exec)                                                                                \
    X(sqlite3_extended_result_codes)                                                               \
    X(sqlite3_finalize)                                                                            \
    X(sqlite3_get_autocommit)                                                                      \
    X(sqlite3_last_insert_rowid)                                                                   \
    X(sqlite3_open_v2)                                                                             \
    X(sqlite3_prepare_v2)                                                                          \
    X(sqlite3_reset)                                                                               \
    X(sqlite3_step)

#ifndef AD_LAZY_DECLARE
#define AD_LAZY_DECLARE(f) extern __typeof__(f) *ad_lazy_##f;
#endif
AD_SQLITE_SYMBOLS(AD_LAZY_DECLARE)

#ifndef AD_LAZY_NO_REDIRECT
#define sqlite3_bind_double (*ad_lazy_sqlite3_bind_double)
#define sqlite3_bind_int (*ad_lazy_sqlite3_bind_int)
#define sqlite3_bind_int64 (*ad_lazy_sqlite3_bind_int64)
#define sqlite3_bind_null (*ad_lazy_sqlite3_bind_null)
#define sqlite3_bind_text (*ad_lazy_sqlite3_bind_text)
#define sqlite3_busy_timeout (*ad_lazy_sqlite3_busy_timeout)
#define sqlite3_close (*ad_lazy_sqlite3_close)
#define sqlite3_column_bytes (*ad_lazy_sqlite3_column_bytes)
#define sqlite3_column_double (*ad_lazy_sqlite3_column_double)
#define sqlite3_column_int (*ad_lazy_sqlite3_column_int)
#define sqlite3_column_int64 (*ad_lazy_sqlite3_column_int64)
#define sqlite3_column_text (*ad_lazy_sqlite3_column_text)
#define sqlite3_column_type (*ad_lazy_sqlite3_column_type)
#define sqlite3_errmsg (*ad_lazy_sqlite3_errmsg)
#define sqlite3_exec (*ad_lazy_sqlite3_exec)
#define sqlite3_extended_result_codes (*ad_lazy_sqlite3_extended_result_codes)
#define sqlite3_finalize (*ad_lazy_sqlite3_finalize)
#define sqlite3_get_autocommit (*ad_lazy_sqlite3_get_autocommit)
#define sqlite3_last_insert_rowid (*ad_lazy_sqlite3_last_insert_rowid)
#define sqlite3_open_v2 (*ad_lazy_sqlite3_open_v2)
#define sqlite3_prepare_v2 (*ad_lazy_sqlite3_prepare_v2)
#define sqlite3_reset (*ad_lazy_sqlite3_reset)
#define sqlite3_step (*ad_lazy_sqlite3_step)
#endif

#endif /* AD_LAZY_SQLITE_H */
