//! The floor under the dynamic module in `make bench`: every hook Envoy's
//! HTTP-filter ABI (v0.2.0, Envoy 1.40) requires, each doing nothing. What
//! portero's module costs beyond this is portero's own work.
//!
//! Its filter config can name one Envoy callback to make on every request,
//! so `make bench` measures each piece of a module's per-request floor
//! alone (`""`: nothing; `"headers"`: read the request's header map, as
//! portero does twice per request; `"attribute"`: read the route name;
//! `"set_header"`: write one request header; `"counter"`: add one to a
//! counter with two labels, as portero's hand-over of counts does).

use std::ffi::c_void;

/// Envoy's ABI version string this module was built against.
static ABI_VERSION: &[u8] = b"v0.2.0\0";
const CONTINUE: u32 = 0;
const REQUEST_HEADER: u32 = 0;
const ATTRIBUTE_XDS_ROUTE_NAME: u32 = 61;

type Ptr = *const c_void;

/// A byte range: Envoy's (lent for one call) or the module's.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    ptr: *const u8,
    length: usize,
}

impl Buffer {
    fn of(bytes: &[u8]) -> Buffer {
        Buffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }
}

/// A header Envoy owns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Header {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

extern "C" {
    fn envoy_dynamic_module_callback_http_get_headers_size(filter: Ptr, header_type: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: Ptr,
        header_type: u32,
        result: *mut Header,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: Ptr,
        header_type: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: Ptr,
        attribute_id: u32,
        result: *mut Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: Ptr,
        name: Buffer,
        label_names: *const Buffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: Ptr,
        id: usize,
        label_values: *const Buffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

/// The one callback a config makes per request.
enum Probe {
    Nothing,
    Headers,
    Attribute,
    SetHeader,
    Counter(usize),
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    ABI_VERSION.as_ptr()
}

/// # Safety
/// Envoy passes its config pointer and a buffer valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: Ptr,
    _name: Buffer,
    config: Buffer,
) -> Ptr {
    let config = if config.ptr.is_null() {
        &[][..]
    } else {
        std::slice::from_raw_parts(config.ptr, config.length)
    };
    let probe = match config {
        b"headers" => Probe::Headers,
        b"attribute" => Probe::Attribute,
        b"set_header" => Probe::SetHeader,
        b"counter" => {
            let labels = [Buffer::of(b"flow"), Buffer::of(b"outcome")];
            let mut id = 0;
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                envoy,
                Buffer::of(b"probe_requests"),
                labels.as_ptr(),
                labels.len(),
                &mut id,
            );
            Probe::Counter(id)
        }
        _ => Probe::Nothing,
    };
    // One per config, for the life of the process: a bench fixture.
    (Box::leak(Box::new(probe)) as *const Probe).cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(_config: Ptr) {}

/// The filter is its config's probe (no per-stream state).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(config: Ptr, _envoy: Ptr) -> Ptr {
    config
}

/// # Safety
/// `filter` is the probe `config_new` leaked; `envoy` is this stream's.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: Ptr,
    filter: Ptr,
    _end_of_stream: bool,
) -> u32 {
    match &*filter.cast::<Probe>() {
        Probe::Nothing => {}
        Probe::Headers => {
            let count = envoy_dynamic_module_callback_http_get_headers_size(envoy, REQUEST_HEADER);
            let empty = Header {
                key_ptr: std::ptr::null(),
                key_length: 0,
                value_ptr: std::ptr::null(),
                value_length: 0,
            };
            let mut headers = vec![empty; count];
            envoy_dynamic_module_callback_http_get_headers(
                envoy,
                REQUEST_HEADER,
                headers.as_mut_ptr(),
            );
            std::hint::black_box(&headers);
        }
        Probe::Attribute => {
            let mut name = Buffer {
                ptr: std::ptr::null(),
                length: 0,
            };
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                envoy,
                ATTRIBUTE_XDS_ROUTE_NAME,
                &mut name,
            );
            std::hint::black_box(name);
        }
        Probe::SetHeader => {
            envoy_dynamic_module_callback_http_set_header(
                envoy,
                REQUEST_HEADER,
                Buffer::of(b"x-probe"),
                Buffer::of(b"1"),
            );
        }
        Probe::Counter(id) => {
            let values = [Buffer::of(b"anonymous"), Buffer::of(b"route_off")];
            envoy_dynamic_module_callback_http_filter_increment_counter(
                envoy,
                *id,
                values.as_ptr(),
                values.len(),
                1,
            );
        }
    }
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
