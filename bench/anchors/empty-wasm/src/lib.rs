//! The floor under the wasm filter in `make bench`: a proxy-wasm HTTP
//! filter on the same SDK as portero's, whose every hook is the SDK's
//! default (continue). What portero's filter costs beyond this is portero's
//! own work, not the VM's.
//!
//! Its plugin configuration can name one host call to make on every
//! request, so `make bench` measures each piece of a wasm filter's
//! per-request floor alone (`""`: nothing; `"headers"`: read the request
//! header map; `"header_by_name"`: read the `cookie` header by name;
//! `"three_by_name"`: read three absent headers by name; `"property"`: read
//! the route name; `"set_header"`: write one request header (replace);
//! `"add_header"`: add one; `"seven_adds"`: add seven (what a forwarded
//! session writes); `"remove_absent"`: remove one that is absent;
//! `"headers_both_ways"`: read the request map, then the response map;
//! `"counter"`: add one to a metric).
#![cfg(target_arch = "wasm32")]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(EmptyRoot { probe: Probe::Nothing })
    });
}}

/// The one host call a configuration makes per request.
#[derive(Clone, Copy)]
enum Probe {
    Nothing,
    Headers,
    HeaderByName,
    ThreeByName,
    Property,
    SetHeader,
    AddHeader,
    SevenAdds,
    RemoveAbsent,
    HeadersBothWays,
    Counter(u32),
}

struct EmptyRoot {
    probe: Probe,
}

impl Context for EmptyRoot {}

impl RootContext for EmptyRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.probe = match config.as_slice() {
            b"headers" => Probe::Headers,
            b"header_by_name" => Probe::HeaderByName,
            b"three_by_name" => Probe::ThreeByName,
            b"property" => Probe::Property,
            b"set_header" => Probe::SetHeader,
            b"add_header" => Probe::AddHeader,
            b"seven_adds" => Probe::SevenAdds,
            b"headers_both_ways" => Probe::HeadersBothWays,
            b"remove_absent" => Probe::RemoveAbsent,
            b"counter" => {
                proxy_wasm::hostcalls::define_metric(MetricType::Counter, "probe_requests")
                    .map_or(Probe::Nothing, Probe::Counter)
            }
            _ => Probe::Nothing,
        };
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EmptyStream { probe: self.probe }))
    }
}

struct EmptyStream {
    probe: Probe,
}

impl Context for EmptyStream {}

impl HttpContext for EmptyStream {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        match self.probe {
            Probe::Nothing => {}
            Probe::Headers | Probe::HeadersBothWays => {
                std::hint::black_box(self.get_http_request_headers_bytes());
            }
            Probe::HeaderByName => {
                std::hint::black_box(self.get_http_request_header_bytes("cookie"));
            }
            Probe::ThreeByName => {
                for name in ["x-probe-one", "x-probe-two", "x-probe-three"] {
                    std::hint::black_box(self.get_http_request_header_bytes(name));
                }
            }
            Probe::Property => {
                std::hint::black_box(self.get_property(vec!["xds", "route_name"]));
            }
            Probe::SetHeader => self.set_http_request_header("x-probe", Some("1")),
            Probe::AddHeader => self.add_http_request_header("x-probe", "1"),
            Probe::SevenAdds => {
                for name in ["x-p1", "x-p2", "x-p3", "x-p4", "x-p5", "x-p6", "x-p7"] {
                    self.add_http_request_header(name, "1");
                }
            }
            Probe::RemoveAbsent => self.set_http_request_header("x-probe-absent", None),
            Probe::Counter(id) => {
                let _ = proxy_wasm::hostcalls::increment_metric(id, 1);
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Probe::HeadersBothWays = self.probe {
            std::hint::black_box(self.get_http_response_headers_bytes());
        }
        Action::Continue
    }
}
