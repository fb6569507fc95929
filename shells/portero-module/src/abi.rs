//! The part of Envoy's dynamic-module C ABI this filter uses, written by
//! hand from the contract of Envoy 1.40 (`abi.h`, ABI "v0.2.0"): opaque
//! pointers, the buffer and header structs, the status numbers, the
//! callbacks Envoy exports (resolved when Envoy loads the module), and safe
//! handles over them ([`Filter`], [`ConfigDefinition`]). The hooks Envoy
//! calls are in `exports.rs`.
//!
//! With `exports`, the only `unsafe` of this shell.
#![allow(non_camel_case_types)]

use std::ffi::c_void;

use portero_core::edited_headers::HeaderLine;
use portero_core::flow::{DispatchError, SidecarCall, SidecarReply};

pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

pub type ConfigEnvoyPtr = *mut c_void;
pub type ConfigModulePtr = *const c_void;
pub type FilterEnvoyPtr = *mut c_void;
pub type FilterModulePtr = *const c_void;

/// Bytes Envoy owns, valid during the current hook.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

/// Bytes the module owns; Envoy copies them during the call.
#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleBuffer {
    ptr: *const u8,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }
}

/// A header Envoy owns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHeader {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

/// A header the module owns.
#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleHeader {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

impl ModuleHeader {
    fn of(key: &[u8], value: &[u8]) -> ModuleHeader {
        ModuleHeader {
            key_ptr: key.as_ptr(),
            key_length: key.len(),
            value_ptr: value.as_ptr(),
            value_length: value.len(),
        }
    }
}

/// Which header map (`envoy_dynamic_module_type_http_header_type`).
pub const REQUEST_HEADER: u32 = 0;
pub const RESPONSE_HEADER: u32 = 2;

/// Header-hook answers.
pub const HEADERS_CONTINUE: u32 = 0;
pub const HEADERS_STOP_ITERATION: u32 = 1;
pub const HEADERS_STOP_ALL_AND_BUFFER: u32 = 3;
/// Body- and trailer-hook answers.
pub const BODY_CONTINUE: u32 = 0;
pub const TRAILERS_CONTINUE: u32 = 0;

/// Attribute ids (`envoy_dynamic_module_type_attribute_id`).
pub const ATTRIBUTE_SOURCE_ADDRESS: u32 = 24;
pub const ATTRIBUTE_XDS_ROUTE_NAME: u32 = 61;

/// Callout start and end.
const CALLOUT_INIT_SUCCESS: u32 = 0;
const CALLOUT_RESULT_SUCCESS: u32 = 0;

/// `envoy_dynamic_module_type_metrics_result`: success.
const METRICS_SUCCESS: u32 = 0;

/// Log levels.
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;

extern "C" {
    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result_headers: *mut EnvoyHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers: *const ModuleHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: FilterEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *const ModuleHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        histogram_id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
}

/// An Envoy-owned byte range as a slice (`{NULL, 0}` is empty).
///
/// # Safety
/// `ptr` must point at `length` readable bytes for the life of the hook.
pub unsafe fn bytes<'a>(ptr: *const u8, length: usize) -> &'a [u8] {
    if ptr.is_null() || length == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(ptr, length)
    }
}

// ── safe handles over Envoy's callbacks ─────────────────────────────────

/// Envoy's side of one stream. Made only from the pointer Envoy passes to a
/// hook and kept in that stream's own state, which Envoy destroys with the
/// stream: it is live whenever a hook of the stream runs.
#[derive(Clone, Copy)]
pub struct Filter(pub FilterEnvoyPtr);

impl Filter {
    /// Every line of a header map, copied.
    pub fn headers(self, header_type: u32) -> Vec<HeaderLine> {
        if self.0.is_null() {
            return Vec::new();
        }
        // SAFETY: the count and the array Envoy fills, during this hook.
        unsafe {
            let count = envoy_dynamic_module_callback_http_get_headers_size(self.0, header_type);
            if count == 0 {
                return Vec::new();
            }
            let empty = EnvoyHeader {
                key_ptr: std::ptr::null(),
                key_length: 0,
                value_ptr: std::ptr::null(),
                value_length: 0,
            };
            let mut raw = vec![empty; count];
            if !envoy_dynamic_module_callback_http_get_headers(
                self.0,
                header_type,
                raw.as_mut_ptr(),
            ) {
                return Vec::new();
            }
            raw.iter()
                .map(|h| {
                    (
                        bytes(h.key_ptr, h.key_length).to_vec(),
                        bytes(h.value_ptr, h.value_length).to_vec(),
                    )
                })
                .collect()
        }
    }

    /// A string attribute of the stream (route name, client address).
    pub fn attribute(self, id: u32) -> Option<String> {
        if self.0.is_null() {
            return None;
        }
        let mut out = EnvoyBuffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        // SAFETY: Envoy fills `out` with bytes it owns, valid during this hook.
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(self.0, id, &mut out)
        };
        if !found {
            return None;
        }
        // SAFETY: as above.
        let value = unsafe { bytes(out.ptr, out.length) };
        String::from_utf8(value.to_vec()).ok()
    }

    /// Replaces every line of `name` with one holding `value`; whether
    /// Envoy did.
    pub fn set_header(self, header_type: u32, name: &str, value: &[u8]) -> bool {
        self.write_header(header_type, name, ModuleBuffer::of(value))
    }

    /// Removes every line of `name` (the ABI removes on a null value, and
    /// promises nothing for an empty one); whether Envoy did.
    pub fn remove_header(self, header_type: u32, name: &str) -> bool {
        let null = ModuleBuffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        self.write_header(header_type, name, null)
    }

    fn write_header(self, header_type: u32, name: &str, value: ModuleBuffer) -> bool {
        if self.0.is_null() {
            return false;
        }
        // SAFETY: module-owned slices (or null), copied by Envoy during the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        }
    }

    /// Adds a line; whether Envoy did.
    pub fn add_header(self, header_type: u32, name: &str, value: &[u8]) -> bool {
        if self.0.is_null() {
            return false;
        }
        // SAFETY: module-owned slices, copied by Envoy during the call.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.0,
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    pub fn send_response(self, status: u32, headers: &[(String, String)], body: &[u8]) {
        if self.0.is_null() {
            return;
        }
        let headers: Vec<ModuleHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHeader::of(k.as_bytes(), v.as_bytes()))
            .collect();
        // SAFETY: module-owned slices, copied by Envoy during the call.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                status,
                headers.as_ptr(),
                headers.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(b"portero"),
            );
        }
    }

    /// Starts an HTTP call to a cluster; its id names the answer.
    pub fn callout(self, call: &SidecarCall) -> Result<u64, DispatchError> {
        if self.0.is_null() {
            return Err(DispatchError("no stream".into()));
        }
        let headers: Vec<ModuleHeader> = call
            .headers
            .iter()
            .map(|(k, v)| ModuleHeader::of(k.as_bytes(), v.as_bytes()))
            .collect();
        let mut id: u64 = 0;
        // SAFETY: module-owned slices, copied by Envoy during the call.
        let started = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.0,
                &mut id,
                ModuleBuffer::of(call.cluster.as_bytes()),
                headers.as_ptr(),
                headers.len(),
                ModuleBuffer::of(&call.body),
                call.timeout_ms,
            )
        };
        if started == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(DispatchError(format!("callout not started ({started})")))
        }
    }

    /// Lets a stream held by `HEADERS_STOP_ALL_AND_BUFFER` go on.
    pub fn continue_decoding(self) {
        if !self.0.is_null() {
            // SAFETY: Envoy's pointer for this stream, during its hook.
            unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
        }
    }

    /// Adds `count` to the series `label_values` of counter `id`.
    pub fn increment_counter(self, id: usize, label_values: &[&str], count: u64) {
        if self.0.is_null() {
            return;
        }
        let values: Vec<ModuleBuffer> = label_values
            .iter()
            .map(|v| ModuleBuffer::of(v.as_bytes()))
            .collect();
        // SAFETY: module-owned slices, read by Envoy during the call.
        unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.0,
                id,
                values.as_ptr(),
                values.len(),
                count,
            );
        }
    }

    /// Records a value in the (unlabelled) histogram `id`.
    pub fn record_histogram(self, id: usize, value: u64) {
        if self.0.is_null() {
            return;
        }
        // SAFETY: no labels; a plain value.
        unsafe {
            envoy_dynamic_module_callback_http_filter_record_histogram_value(
                self.0,
                id,
                std::ptr::null(),
                0,
                value,
            );
        }
    }
}

/// Envoy's side of a filter config while `config_new` runs, the only time
/// metrics can be defined.
pub struct ConfigDefinition(pub ConfigEnvoyPtr);

impl ConfigDefinition {
    /// A labelled counter's id, or Envoy's refusal.
    pub fn define_counter(&self, name: &str, labels: &[&str]) -> Result<usize, u32> {
        let labels: Vec<ModuleBuffer> = labels
            .iter()
            .map(|l| ModuleBuffer::of(l.as_bytes()))
            .collect();
        let mut id = 0usize;
        // SAFETY: Envoy's config pointer during `config_new`; module-owned
        // slices read during the call.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.0,
                ModuleBuffer::of(name.as_bytes()),
                labels.as_ptr(),
                labels.len(),
                &mut id,
            )
        };
        if result == METRICS_SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }

    /// An unlabelled histogram's id, or Envoy's refusal.
    pub fn define_histogram(&self, name: &str) -> Result<usize, u32> {
        let mut id = 0usize;
        // SAFETY: as above; no labels.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_histogram(
                self.0,
                ModuleBuffer::of(name.as_bytes()),
                std::ptr::null(),
                0,
                &mut id,
            )
        };
        if result == METRICS_SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }
}

/// Whether Envoy logs at `level`.
pub fn log_enabled(level: u32) -> bool {
    // SAFETY: a plain query, callable from any thread.
    unsafe { envoy_dynamic_module_callback_log_enabled(level) }
}

pub fn log(level: u32, message: &str) {
    // SAFETY: the message outlives the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

/// A callout's answer, copied out of Envoy's buffers: its status when it
/// succeeded, and its body.
///
/// # Safety
/// The pointers are Envoy's for this hook, each array of the given size.
pub unsafe fn callout_reply(
    result: u32,
    headers: *const EnvoyHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) -> SidecarReply {
    let mut reply = SidecarReply {
        status: None,
        body: Vec::new(),
    };
    if result != CALLOUT_RESULT_SUCCESS {
        return reply;
    }
    let headers: &[EnvoyHeader] = if headers.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(headers, headers_size)
    };
    reply.status = headers
        .iter()
        .find(|h| bytes(h.key_ptr, h.key_length) == b":status")
        .and_then(|h| std::str::from_utf8(bytes(h.value_ptr, h.value_length)).ok())
        .and_then(|s| s.parse().ok());
    let chunks: &[EnvoyBuffer] = if body_chunks.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(body_chunks, body_chunks_size)
    };
    for chunk in chunks {
        reply.body.extend_from_slice(bytes(chunk.ptr, chunk.length));
    }
    reply
}
