-- wrk script: the fields Chrome sends for a script (benches/heads.rs's CHROME_GET, Host aside), keep-alive.
wrk.headers["Connection"] = "keep-alive"
wrk.headers["sec-ch-ua-platform"] = '"Linux"'
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
wrk.headers["Accept"] = "*/*"
wrk.headers["Sec-Fetch-Site"] = "same-origin"
wrk.headers["Sec-Fetch-Mode"] = "no-cors"
wrk.headers["Sec-Fetch-Dest"] = "script"
wrk.headers["Referer"] = "http://localhost:8080/"
wrk.headers["Accept-Encoding"] = "gzip, deflate, br, zstd"
wrk.headers["Accept-Language"] = "en-US,en;q=0.9"
