//! The floor under the dynamic module in `make bench`: every hook Envoy's
//! HTTP-filter ABI (v0.2.0, Envoy 1.40) requires, each doing nothing. What
//! portero's module costs beyond this is portero's own work.
//!
//! No pointer is read, so no `unsafe`: a config and a filter are the
//! address of a static, which Envoy only hands back.

/// Envoy's ABI version string this module was built against.
static ABI_VERSION: &[u8] = b"v0.2.0\0";
static NOTHING: u8 = 0;
const CONTINUE: u32 = 0;

type Ptr = *const std::ffi::c_void;

/// A buffer Envoy lends for one call (never read here).
#[repr(C)]
#[allow(dead_code)]
pub struct EnvoyBuffer {
    ptr: *const u8,
    length: usize,
}

fn nothing() -> Ptr {
    (&NOTHING as *const u8).cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    ABI_VERSION.as_ptr()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _envoy: Ptr,
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> Ptr {
    nothing()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(_config: Ptr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(_config: Ptr, _envoy: Ptr) -> Ptr {
    nothing()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _envoy: Ptr,
    _filter: Ptr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: Ptr,
    _filter: Ptr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: Ptr,
    _filter: Ptr,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _envoy: Ptr,
    _filter: Ptr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: Ptr,
    _filter: Ptr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: Ptr,
    _filter: Ptr,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_envoy: Ptr, _filter: Ptr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_filter: Ptr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: Ptr,
    _filter: Ptr,
    _callout_id: u64,
    _result: u32,
    _headers: Ptr,
    _headers_size: usize,
    _body_chunks: Ptr,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: Ptr,
    _filter: Ptr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: Ptr,
    _filter: Ptr,
    _stream_id: u64,
    _headers: Ptr,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: Ptr,
    _filter: Ptr,
    _stream_id: u64,
    _data: Ptr,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: Ptr,
    _filter: Ptr,
    _stream_id: u64,
    _trailers: Ptr,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: Ptr,
    _filter: Ptr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: Ptr,
    _filter: Ptr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: Ptr,
    _filter: Ptr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: Ptr,
    _filter: Ptr,
) {
}
