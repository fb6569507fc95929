//! The hooks Envoy calls, by the names its dynamic-module ABI gives them:
//! Envoy's pointers in, plain Rust values out to [`crate::hooks`]. With
//! [`crate::abi`], the only `unsafe` of this shell.

use crate::abi::{
    bytes, callout_reply, ConfigDefinition, ConfigEnvoyPtr, ConfigModulePtr, EnvoyBuffer,
    EnvoyHeader, Filter, FilterEnvoyPtr, FilterModulePtr, ABI_VERSION, BODY_CONTINUE,
    TRAILERS_CONTINUE,
};
use crate::hooks::{self, Stream};
use crate::worker::ModuleConfig;

/// Runs `hook` on stream `filter`, then frees the stream if Envoy destroyed
/// it meanwhile (from inside the hook) and no other hook of it runs.
///
/// # Safety
/// `filter` is a pointer `filter_new` returned and Envoy has not yet
/// destroyed it when the hook starts.
unsafe fn on_stream<T>(filter: FilterModulePtr, hook: impl FnOnce(&Stream) -> T) -> T {
    let ptr = filter as *mut Stream;
    // Shared references only: a re-entered hook makes another one, which
    // is sound; the state inside is a RefCell.
    let (result, free) = {
        let stream = &*ptr;
        stream.enter();
        let result = hook(stream);
        (result, stream.leave())
    };
    if free {
        // No reference to the stream is live any more.
        drop(Box::from_raw(ptr));
    }
    result
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    hooks::program_init();
    ABI_VERSION.as_ptr()
}

/// # Safety
/// Envoy passes buffers valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: ConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    let json = bytes(config.ptr, config.length);
    match hooks::config_new(&ConfigDefinition(config_envoy), json) {
        Some(config) => Box::into_raw(Box::new(config)) as ConfigModulePtr,
        None => std::ptr::null(),
    }
}

/// # Safety
/// `config` is a pointer `config_new` returned, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: ConfigModulePtr,
) {
    if !config.is_null() {
        hooks::config_destroy(*Box::from_raw(config as *mut ModuleConfig));
    }
}

/// # Safety
/// `config` is a live pointer `config_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ConfigModulePtr,
    envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    let config = &*(config as *const ModuleConfig);
    Box::into_raw(Box::new(hooks::filter_new(config, Filter(envoy)))) as FilterModulePtr
}

/// # Safety
/// Envoy's pointers for this stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    on_stream(filter, |stream| {
        hooks::request_headers(stream, Filter(envoy))
    })
}

/// # Safety
/// Envoy's pointers and the reply it owns, valid during the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    let reply = callout_reply(result, headers, headers_size, body_chunks, body_chunks_size);
    on_stream(filter, |stream| {
        hooks::callout_done(stream, Filter(envoy), callout_id, reply)
    });
}

/// # Safety
/// Envoy's pointers for this stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    on_stream(filter, |stream| {
        hooks::response_headers(stream, Filter(envoy))
    })
}

/// # Safety
/// `filter` is a pointer `filter_new` returned, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: FilterModulePtr) {
    if filter.is_null() {
        return;
    }
    let ptr = filter as *mut Stream;
    // Freed now unless a hook of the stream is running (Envoy destroying it
    // from inside one): then that hook frees it as it returns.
    if (*ptr).destroy() {
        drop(Box::from_raw(ptr));
    }
}

/// # Safety
/// Envoy's pointers for this stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
) {
    on_stream(filter, |stream| {
        hooks::stream_complete(stream, Filter(envoy))
    });
}

// Hooks Envoy requires but this filter has nothing to do in.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) -> u32 {
    TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) -> u32 {
    TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
    _headers: *const EnvoyHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
    _trailers: *const EnvoyHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) {
}
