//! Block1 uploads (RFC 7959 §2.3, §2.5): reassembled by the endpoint for ordinary
//! resources (atomic), handed to the handler block by block for resources that ask for
//! it (non-atomic).

use std::sync::{Arc, Mutex};

use corium::{continue_block1, Code, RequestContext, Resource, Response, Router};

mod common;
use common::{client, start, LIMIT};

/// What a handler saw: the length of each request's payload, in order, and the bytes.
#[derive(Default)]
struct Seen {
    calls: Vec<usize>,
    body: Vec<u8>,
}

fn atomic(seen: Arc<Mutex<Seen>>) -> Resource {
    Resource::new().put(move |ctx: RequestContext| {
        let seen = Arc::clone(&seen);
        async move {
            let mut seen = seen.lock().unwrap();
            seen.calls.push(ctx.request.payload.len());
            seen.body = ctx.request.payload.clone();
            Response::new(Code::CHANGED)
        }
    })
}

/// Appends each block where it belongs, answering 2.31 until the last one (§2.5).
fn streaming(seen: Arc<Mutex<Seen>>) -> Resource {
    Resource::new()
        .non_atomic_upload()
        .put(move |ctx: RequestContext| {
            let seen = Arc::clone(&seen);
            async move {
                let mut seen = seen.lock().unwrap();
                seen.calls.push(ctx.request.payload.len());
                let Some(block) = ctx.block1() else {
                    seen.body = ctx.request.payload.clone();
                    return Response::new(Code::CHANGED);
                };
                if block.offset() != seen.body.len() {
                    return Response::new(Code::REQUEST_ENTITY_INCOMPLETE);
                }
                seen.body.extend_from_slice(&ctx.request.payload);
                if block.more {
                    continue_block1(block)
                } else {
                    let mut done = Response::new(Code::CHANGED);
                    let mut buf = [0u8; 4];
                    done.options.push(
                        corium::OptionNumber::BLOCK1,
                        block.encode(&mut buf).to_vec(),
                    );
                    done
                }
            }
        })
}

#[tokio::test]
async fn atomic_and_non_atomic_uploads() {
    let whole = Arc::new(Mutex::new(Seen::default()));
    let blocks = Arc::new(Mutex::new(Seen::default()));
    let router = Router::new()
        .route("/whole", atomic(Arc::clone(&whole)))
        .route("/blocks", streaming(Arc::clone(&blocks)));
    let server = start(router).await;
    let client = client().await;
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 241) as u8).collect();

    for path in ["/whole", "/blocks"] {
        let response = tokio::time::timeout(LIMIT, client.put(&server.uri(path), body.clone()))
            .await
            .expect("in time")
            .expect("answered");
        assert_eq!(response.code, Code::CHANGED, "{path}");
    }
    {
        let whole = whole.lock().unwrap();
        assert_eq!(whole.calls, [5000], "the endpoint reassembled the upload");
        assert_eq!(whole.body, body);
        let blocks = blocks.lock().unwrap();
        assert_eq!(
            blocks.calls,
            [1024, 1024, 1024, 1024, 904],
            "the handler saw each 1024-byte block"
        );
        assert_eq!(blocks.body, body);
    }
    server.shutdown().await;
}
