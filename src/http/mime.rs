//! MIME types by file extension, as `Content-Type` values.
//!
//! Text types carry `; charset=utf-8` (Vite emits UTF-8, and browsers otherwise guess). Anything
//! unknown is `application/octet-stream`, which browsers download rather than render — the safe
//! default for a file whose type we cannot vouch for (nginx does the same).

/// The `Content-Type` for a file name or key, by its extension (case-insensitive).
pub fn for_path(path: &[u8]) -> &'static str {
    let name = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
    let ext = match name.iter().rposition(|&c| c == b'.') {
        Some(dot) if dot > 0 => &name[dot + 1..],
        _ => return OCTET_STREAM,
    };
    let mut lower = [0u8; 12];
    if ext.len() > lower.len() {
        return OCTET_STREAM;
    }
    for (l, c) in lower.iter_mut().zip(ext) {
        *l = c.to_ascii_lowercase();
    }
    match &lower[..ext.len()] {
        b"html" | b"htm" => "text/html; charset=utf-8",
        b"js" | b"mjs" | b"cjs" => "text/javascript; charset=utf-8",
        b"css" => "text/css; charset=utf-8",
        b"json" | b"map" => "application/json; charset=utf-8",
        b"webmanifest" => "application/manifest+json; charset=utf-8",
        b"txt" => "text/plain; charset=utf-8",
        b"xml" => "application/xml; charset=utf-8",
        b"svg" => "image/svg+xml; charset=utf-8",
        b"png" => "image/png",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"avif" => "image/avif",
        b"ico" => "image/x-icon",
        b"woff" => "font/woff",
        b"woff2" => "font/woff2",
        b"ttf" => "font/ttf",
        b"otf" => "font/otf",
        b"wasm" => "application/wasm",
        b"mp4" => "video/mp4",
        b"webm" => "video/webm",
        b"mp3" => "audio/mpeg",
        b"pdf" => "application/pdf",
        _ => OCTET_STREAM,
    }
}

/// The type for unknown content.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Whether a content type is textual (worth compressing, carries a charset).
pub fn is_text(content_type: &str) -> bool {
    content_type.contains("charset=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types() {
        assert_eq!(for_path(b"/index.html"), "text/html; charset=utf-8");
        assert_eq!(for_path(b"/assets/index-ThlbQ9On.js"), "text/javascript; charset=utf-8");
        assert_eq!(for_path(b"/a/b.MJS"), "text/javascript; charset=utf-8");
        assert_eq!(for_path(b"/x.css"), "text/css; charset=utf-8");
        assert_eq!(for_path(b"/x.js.map"), "application/json; charset=utf-8");
        assert_eq!(for_path(b"/site.webmanifest"), "application/manifest+json; charset=utf-8");
        assert_eq!(for_path(b"/f.woff2"), "font/woff2");
        assert_eq!(for_path(b"/p.JPEG"), "image/jpeg");
        assert_eq!(for_path(b"/m.wasm"), "application/wasm");
        assert_eq!(for_path(b"/i.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(for_path(b"/doc.pdf"), "application/pdf");
    }

    #[test]
    fn unknown_and_edge_cases() {
        assert_eq!(for_path(b"/Makefile"), OCTET_STREAM);
        assert_eq!(for_path(b"/archive.tar.zst"), OCTET_STREAM);
        assert_eq!(for_path(b"/.htaccess"), OCTET_STREAM);
        assert_eq!(for_path(b"/dir.d/file"), OCTET_STREAM);
        assert_eq!(for_path(b"/x.averyveryverylongext"), OCTET_STREAM);
        assert!(is_text(for_path(b"/a.html")));
        assert!(!is_text(for_path(b"/a.png")));
    }
}
