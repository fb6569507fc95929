//! The byte-level header ABI: proxy-wasm's header-map host calls, made
//! directly so that every name and value stays bytes (see the crate's
//! documentation). The only `unsafe` of this shell.
//!
//! Written by hand (a few lines) because the SDK's header functions either
//! decode as UTF-8 and unwrap, or panic on any status but `Ok`; here every
//! failure is "nothing read" / "nothing written", and the flow takes its
//! failing branch.

use proxy_wasm::types::MapType;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_remove_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

/// Sets `name` to one line holding `value`.
pub fn replace(map_type: MapType, name: &str, value: &[u8]) {
    // SAFETY: pointers and lengths of live slices.
    unsafe {
        proxy_replace_header_map_value(
            map_type,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        );
    }
}

/// Every `(name, value)` line of a map, in order.
pub fn read(map_type: MapType) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through the module's
    // `proxy_on_memory_allocate` (the SDK's allocator); we take it over.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    if status != 0 || data.is_null() {
        return Vec::new();
    }
    // SAFETY: as above; `size` bytes at `data`, allocated as a Vec<u8>.
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    crate::http_map::decode(&bytes).unwrap_or_default()
}

pub fn remove(map_type: MapType, name: &str) {
    // SAFETY: pointers and lengths of live slices.
    unsafe {
        proxy_remove_header_map_value(map_type, name.as_ptr(), name.len());
    }
}

pub fn add(map_type: MapType, name: &str, value: &[u8]) {
    // SAFETY: pointers and lengths of live slices.
    unsafe {
        proxy_add_header_map_value(
            map_type,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        );
    }
}
