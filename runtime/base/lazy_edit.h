/* lazy_edit.h -- <editline/readline.h> through lazily loaded pointers (see lazy.h). */
#ifndef AD_LAZY_EDIT_H
#define AD_LAZY_EDIT_H

#include <editline/readline.h>

#include "base/lazy.h"

#define AD_EDIT_SYMBOLS(X) \
    X(add_history) \
    X(clear_history) \
    X(stifle_history) \
    X(read_history) \
    X(readline) \
    X(rl_attempted_completion_function) \
    X(rl_attempted_completion_over) \
    X(rl_basic_word_break_characters) \
    X(rl_completion_matches) \
    X(rl_getc_function) \
    X(rl_initialize) \
    X(rl_line_buffer) \
    X(rl_outstream) \
    X(rl_readline_name) \
    X(using_history) \
    X(write_history)

#ifndef AD_LAZY_DECLARE
#define AD_LAZY_DECLARE(f) extern __typeof__(f) *ad_lazy_##f;
#endif
AD_EDIT_SYMBOLS(AD_LAZY_DECLARE)

#ifndef AD_LAZY_NO_REDIRECT
#define add_history (*ad_lazy_add_history)
#define clear_history (*ad_lazy_clear_history)
#define stifle_history (*ad_lazy_stifle_history)
#define read_history (*ad_lazy_read_history)
#define readline (*ad_lazy_readline)
#define rl_attempted_completion_function (*ad_lazy_rl_attempted_completion_function)
#define rl_attempted_completion_over (*ad_lazy_rl_attempted_completion_over)
#define rl_basic_word_break_characters (*ad_lazy_rl_basic_word_break_characters)
#define rl_completion_matches (*ad_lazy_rl_completion_matches)
#define rl_getc_function (*ad_lazy_rl_getc_function)
#define rl_initialize (*ad_lazy_rl_initialize)
#define rl_line_buffer (*ad_lazy_rl_line_buffer)
#define rl_outstream (*ad_lazy_rl_outstream)
#define rl_readline_name (*ad_lazy_rl_readline_name)
#define using_history (*ad_lazy_using_history)
#define write_history (*ad_lazy_write_history)
#endif

#endif /* AD_LAZY_EDIT_H */
