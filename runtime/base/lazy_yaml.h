/* lazy_yaml.h -- <yaml.h> through lazily loaded pointers (see lazy.h). */
#ifndef AD_LAZY_YAML_H
#define AD_LAZY_YAML_H

#include <yaml.h>

#include "base/lazy.h"

#define AD_YAML_SYMBOLS(X) \
    X(yaml_document_delete) \
    X(yaml_document_end_event_initialize) \
    X(yaml_document_get_node) \
    X(yaml_document_get_root_node) \
    X(yaml_document_start_event_initialize) \
    X(yaml_emitter_delete) \
    X(yaml_emitter_emit) \
    X(yaml_emitter_initialize) \
    X(yaml_emitter_set_break) \
    X(yaml_emitter_set_indent) \
    X(yaml_emitter_set_output) \
    X(yaml_emitter_set_unicode) \
    X(yaml_emitter_set_width) \
    X(yaml_mapping_end_event_initialize) \
    X(yaml_mapping_start_event_initialize) \
    X(yaml_parser_delete) \
    X(yaml_parser_initialize) \
    X(yaml_parser_load) \
    X(yaml_parser_set_input_string) \
    X(yaml_scalar_event_initialize) \
    X(yaml_sequence_end_event_initialize) \
    X(yaml_sequence_start_event_initialize) \
    X(yaml_stream_end_event_initialize) \
    X(yaml_stream_start_event_initialize)

#ifndef AD_LAZY_DECLARE
#define AD_LAZY_DECLARE(f) extern __typeof__(f) *ad_lazy_##f;
#endif
AD_YAML_SYMBOLS(AD_LAZY_DECLARE)

#ifndef AD_LAZY_NO_REDIRECT
#define yaml_document_delete (*ad_lazy_yaml_document_delete)
#define yaml_document_end_event_initialize (*ad_lazy_yaml_document_end_event_initialize)
#define yaml_document_get_node (*ad_lazy_yaml_document_get_node)
#define yaml_document_get_root_node (*ad_lazy_yaml_document_get_root_node)
#define yaml_document_start_event_initialize (*ad_lazy_yaml_document_start_event_initialize)
#define yaml_emitter_delete (*ad_lazy_yaml_emitter_delete)
#define yaml_emitter_emit (*ad_lazy_yaml_emitter_emit)
#define yaml_emitter_initialize (*ad_lazy_yaml_emitter_initialize)
#define yaml_emitter_set_break (*ad_lazy_yaml_emitter_set_break)
#define yaml_emitter_set_indent (*ad_lazy_yaml_emitter_set_indent)
#define yaml_emitter_set_output (*ad_lazy_yaml_emitter_set_output)
#define yaml_emitter_set_unicode (*ad_lazy_yaml_emitter_set_unicode)
#define yaml_emitter_set_width (*ad_lazy_yaml_emitter_set_width)
#define yaml_mapping_end_event_initialize (*ad_lazy_yaml_mapping_end_event_initialize)
#define yaml_mapping_start_event_initialize (*ad_lazy_yaml_mapping_start_event_initialize)
#define yaml_parser_delete (*ad_lazy_yaml_parser_delete)
#define yaml_parser_initialize (*ad_lazy_yaml_parser_initialize)
#define yaml_parser_load (*ad_lazy_yaml_parser_load)
#define yaml_parser_set_input_string (*ad_lazy_yaml_parser_set_input_string)
#define yaml_scalar_event_initialize (*ad_lazy_yaml_scalar_event_initialize)
#define yaml_sequence_end_event_initialize (*ad_lazy_yaml_sequence_end_event_initialize)
#define yaml_sequence_start_event_initialize (*ad_lazy_yaml_sequence_start_event_initialize)
#define yaml_stream_end_event_initialize (*ad_lazy_yaml_stream_end_event_initialize)
#define yaml_stream_start_event_initialize (*ad_lazy_yaml_stream_start_event_initialize)
#endif

#endif /* AD_LAZY_YAML_H */
