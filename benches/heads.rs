//! Request heads the benches parse, shared by `hot_path.rs` (criterion) and `parse_count.rs`
//! (callgrind); `load/browser.lua` sends the same fields from wrk.

/// What Chrome sends for a script: eleven fields, 431 bytes.
pub const CHROME_GET: &[u8] = b"GET /assets/index-ThlbQ9On.js HTTP/1.1\r\nHost: localhost:8080\r\nConnection: keep-alive\r\n\
sec-ch-ua-platform: \"Linux\"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36\r\n\
Accept: */*\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: script\r\nReferer: http://localhost:8080/\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n\r\n";

/// What `wrk` sends: one field, 51 bytes.
#[allow(dead_code)] // hot_path.rs parses only the browser's head
pub const WRK_GET: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:28001\r\n\r\n";
