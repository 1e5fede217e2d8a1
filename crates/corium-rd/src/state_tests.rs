//! Unit tests of the RD state, with the examples of RFC 9176 §5, §6, §10 and
//! Appendix B as fixtures.
//!
//! Where the RFC shows a payload, the comparison is byte for byte after undoing the
//! RFC's line folding for display ([`unfold`]: a line break and the indentation after
//! it are not part of the payload). Where the RFC's own examples disagree with each
//! other on quoting or attribute order (Figures 22 and 23), links are compared as
//! links: same targets, same attributes and values.

use super::*;
use corium::Code;

fn t0() -> Instant {
    Instant::now()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn from(addr: &str) -> Requester {
    Requester::new(addr.parse().unwrap(), AccessPolicy::SameEndpoint)
}

fn params(q: &str) -> RegistrationParams {
    RegistrationParams::from_query(
        q.split('&').filter(|a| !a.is_empty()).map(str::as_bytes),
        32,
    )
    .unwrap()
}

fn query(q: &str) -> LookupQuery {
    LookupQuery::from_query(q.split('&').filter(|a| !a.is_empty()).map(str::as_bytes)).unwrap()
}

/// Removes the RFC's display folding: each line break and the spaces after it.
fn unfold(s: &str) -> String {
    s.lines().map(str::trim_start).collect()
}

/// Plans and applies a registration; returns its id.
fn register(st: &mut RdState, q: &str, payload: &str, who: &Requester, now: Instant) -> u64 {
    let m = st
        .plan_register(&params(q), payload.as_bytes(), Some(40), who, false, now)
        .unwrap();
    let id = m.id().unwrap();
    st.apply(m);
    id
}

fn lookup(st: &RdState, kind: LookupKind, q: &str, now: Instant) -> String {
    st.lookup(kind, &query(q), None, now).unwrap()
}

fn res(st: &RdState, q: &str, now: Instant) -> String {
    lookup(st, LookupKind::Resource, q, now)
}

fn eps(st: &RdState, q: &str, now: Instant) -> String {
    lookup(st, LookupKind::Endpoint, q, now)
}

/// A link as a comparable value: target and sorted (name, unescaped value) pairs.
type SemanticLink = (String, Vec<(String, Option<String>)>);

fn semantic(doc: &str) -> Vec<SemanticLink> {
    parse_links(doc)
        .map(|l| {
            let l = l.unwrap();
            let mut attrs: Vec<(String, Option<String>)> = l
                .attributes()
                .map(|a| {
                    (
                        a.name.to_ascii_lowercase(),
                        a.value_unescaped()
                            .map(|v| String::from_utf8(v.collect()).unwrap()),
                    )
                })
                .collect();
            attrs.sort();
            (l.target.to_owned(), attrs)
        })
        .collect()
}

/// RFC 9176 §5 Figure 8 registration, §5.3.1 Figures 14–16: a base change resolves
/// the stored relative references anew.
#[test]
fn rfc9176_figures_8_14_16_base_update() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    let ep = from("[2001:db8::99]:40000");
    let figure_8 = "</sensors/temp>;rt=temperature-c;if=sensor,\n\
                    <http://www.example.com/sensors/temp>;\n  anchor=\"/sensors/temp\";rel=describedby";
    let id = register(
        &mut st,
        "ep=endpoint1&lt=500&base=coap://local-proxy-old.example.com",
        figure_8,
        &ep,
        now,
    );
    let figure_14 = "<coap://local-proxy-old.example.com/sensors/temp>;
       rt=temperature-c;if=sensor,
   <http://www.example.com/sensors/temp>;
       anchor=\"coap://local-proxy-old.example.com/sensors/temp\";
       rel=describedby";
    assert_eq!(res(&st, "ep=endpoint1", now), unfold(figure_14));

    // Figure 15: POST /rd/4521?base=coaps://new.example.com
    let m = st
        .plan_update(
            id,
            &params("base=coaps://new.example.com"),
            b"",
            None,
            &ep,
            now + secs(10),
        )
        .unwrap();
    st.apply(m);
    let figure_16 = "<coaps://new.example.com/sensors/temp>;
       rt=temperature-c;if=sensor,
   <http://www.example.com/sensors/temp>;
       anchor=\"coaps://new.example.com/sensors/temp\";
       rel=describedby";
    assert_eq!(res(&st, "ep=endpoint1", now + secs(10)), unfold(figure_16));
    // The update reset the lifetime to the stored lt (500 s from the update).
    assert_eq!(st.get(id).unwrap().expires(), now + secs(510));
}

/// RFC 9176 Appendix B.3: simple host registered with base coap://[2001:db8:f0::1]
/// and the payload of Figure 31; Figures 33, 34 and 35.
///
/// (B.3 says the host registered from port 6553 yet gets the base without a port; the
/// normative text of §5 takes the source port into the base, so the host here
/// registers from 5683, which gives the base the appendix shows.)
#[test]
fn rfc9176_appendix_b() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    let host = from("[2001:db8:f0::1]:5683");
    let figure_31 = "</sensors/temp>;rt=temperature;ct=0,
   </sensors/light>;rt=light-lux;ct=0,
   </t>;anchor=\"/sensors/temp\";rel=alternate,
   <http://www.example.com/sensors/t123>;anchor=\"/sensors/temp\";
       rel=describedby";
    let m = st
        .plan_register(
            &params("ep=simple-host1"),
            figure_31.as_bytes(),
            Some(40),
            &host,
            true,
            now,
        )
        .unwrap();
    st.apply(m);
    let reg = st.find(None, "simple-host1").unwrap();
    assert_eq!(reg.base(), "coap://[2001:db8:f0::1]");
    assert_eq!(reg.lifetime(), 90_000);
    assert!(reg.is_simple());

    // Figure 33.
    assert_eq!(
        res(&st, "rt=temperature", now),
        "<coap://[2001:db8:f0::1]/sensors/temp>;rt=temperature;ct=0"
    );
    // Figure 34.
    let figure_34 = "<coap://[2001:db8:f0::1]/sensors/temp>;rt=temperature;ct=0,
   <coap://[2001:db8:f0::1]/sensors/light>;rt=light-lux;ct=0,
   <coap://[2001:db8:f0::1]/t>;
       anchor=\"coap://[2001:db8:f0::1]/sensors/temp\";rel=alternate,
   <http://www.example.com/sensors/t123>;
       anchor=\"coap://[2001:db8:f0::1]/sensors/temp\";rel=describedby";
    assert_eq!(res(&st, "ep=simple-host1", now), unfold(figure_34));

    // Figure 35: the same as a full registration with a dedicated base.
    let mut st = RdState::new(RdConfig::default());
    register(
        &mut st,
        "ep=simple-host1&base=coap+tcp://sh1.example.com",
        figure_31,
        &host,
        now,
    );
    let out = res(&st, "ep=simple-host1", now);
    assert!(
        out.starts_with("<coap+tcp://sh1.example.com/sensors/temp>;rt=temperature;ct=0,"),
        "{out}"
    );
    assert!(out.contains("<coap+tcp://sh1.example.com/t>;anchor=\"coap+tcp://sh1.example.com/sensors/temp\";rel=alternate"));
}

/// RFC 9176 §6.3, Figure 19: a lookup by a resource type containing `,` and `:`.
#[test]
fn rfc9176_figure_19() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    register(
        &mut st,
        "ep=sensor",
        "</temp>;rt=\"tag:example.org,2020:temperature\",</light>;rt=\"tag:example.org,2020:light\"",
        &from("[2001:db8:3::123]:61616"),
        now,
    );
    let figure_19 = "<coap://[2001:db8:3::123]:61616/temp>;
       rt=\"tag:example.org,2020:temperature\"";
    assert_eq!(
        res(&st, "rt=tag:example.org,2020:temperature", now),
        unfold(figure_19)
    );
}

/// RFC 9176 §6.3, Figure 21: pagination.
#[test]
fn rfc9176_figure_21_pagination() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    let payload: Vec<String> = (0..12).map(|i| format!("</res/{i}>;ct=60")).collect();
    register(
        &mut st,
        "ep=pager",
        &payload.join(","),
        &from("[2001:db8:3::123]:61616"),
        now,
    );
    let page = |p: u64| {
        (p * 5..(p * 5 + 5).min(12))
            .map(|i| format!("<coap://[2001:db8:3::123]:61616/res/{i}>;ct=60"))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(res(&st, "page=0&count=5", now), page(0));
    assert_eq!(res(&st, "page=1&count=5", now), page(1));
    assert_eq!(res(&st, "page=2&count=5", now), page(2));
    assert_eq!(res(&st, "page=3&count=5", now), "");
    assert_eq!(
        res(&st, "count=2", now),
        page(0).split(',').take(2).collect::<Vec<_>>().join(",")
    );
    assert_eq!(res(&st, "count=0", now), "");
    assert_eq!(res(&st, "page=18446744073709551615&count=2", now), "");
}

/// The payload of the 6th response of RFC 6690 §5, as RFC 9176 §6.3 uses it.
const RFC6690_SIXTH: &str = "</sensors>;ct=40;title=\"Sensor Index\",
   </sensors/temp>;rt=\"temperature-c\";if=\"sensor\",
   </sensors/light>;rt=\"light-lux\";if=\"sensor\",
   <http://www.example.com/sensors/t123>;anchor=\"/sensors/temp\"
   ;rel=\"describedby\",
   </t>;anchor=\"/sensors/temp\";rel=\"alternate\"";

/// RFC 9176 §6.3, Figure 22: resources of all endpoints of an endpoint type; absolute
/// targets stay, relative ones are resolved. (The figure writes the attributes without
/// quotes and in another order than the registered RFC 6690 payload; compared as
/// links.)
#[test]
fn rfc9176_figure_22() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    for n in [1, 2] {
        register(
            &mut st,
            &format!(
                "ep=sensor{n}&base=coap://sensor{n}.example.com&et=tag:example.com,2020:platform"
            ),
            RFC6690_SIXTH,
            &from(&format!("[2001:db8::{n}]:5683")),
            now,
        );
    }
    register(
        &mut st,
        "ep=other&et=x",
        RFC6690_SIXTH,
        &from("[2001:db8::3]:5683"),
        now,
    );
    let figure_22 = "<coap://sensor1.example.com/sensors>;ct=40;title=\"Sensor Index\",
   <coap://sensor1.example.com/sensors/temp>;rt=temperature-c;if=sensor,
   <coap://sensor1.example.com/sensors/light>;rt=light-lux;if=sensor,
   <http://www.example.com/sensors/t123>;rel=describedby;
       anchor=\"coap://sensor1.example.com/sensors/temp\",
   <coap://sensor1.example.com/t>;rel=alternate;
       anchor=\"coap://sensor1.example.com/sensors/temp\",
   <coap://sensor2.example.com/sensors>;ct=40;title=\"Sensor Index\",
   <coap://sensor2.example.com/sensors/temp>;rt=temperature-c;if=sensor,
   <coap://sensor2.example.com/sensors/light>;rt=light-lux;if=sensor,
   <http://www.example.com/sensors/t123>;rel=describedby;
       anchor=\"coap://sensor2.example.com/sensors/temp\",
   <coap://sensor2.example.com/t>;rel=alternate;
       anchor=\"coap://sensor2.example.com/sensors/temp\"";
    let out = res(&st, "et=tag:example.com,2020:platform", now);
    assert_eq!(semantic(&out), semantic(&unfold(figure_22)));
    // Byte for byte, the links are the registered ones with resolved references.
    assert!(out.starts_with(
        "<coap://sensor1.example.com/sensors>;ct=40;title=\"Sensor Index\",\
         <coap://sensor1.example.com/sensors/temp>;rt=\"temperature-c\";if=\"sensor\","
    ));
    assert!(out.contains(
        "<http://www.example.com/sensors/t123>;anchor=\"coap://sensor2.example.com/sensors/temp\";rel=\"describedby\""
    ));
}

/// RFC 9176 §6.4, Figure 23: endpoint lookup by endpoint type. (The figure lists
/// `ct=40` among the endpoint attributes; the endpoints here register it as an extra
/// attribute so that the links compare equal.)
#[test]
fn rfc9176_figure_23_endpoint_lookup() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    // Ids follow registration order: pad so the ids are those of the figure.
    st.reserve_ids(1234);
    register(
        &mut st,
        "ep=node5&et=tag:example.com,2020:platform&ct=40",
        "</a>",
        &from("[2001:db8:3::127]:61616"),
        now,
    );
    st.reserve_ids(4521);
    register(
        &mut st,
        "ep=node7&et=tag:example.com,2020:platform&ct=40&d=floor-3",
        "</b>",
        &from("[2001:db8:3::129]:61616"),
        now,
    );
    register(
        &mut st,
        "ep=node8&et=other",
        "</c>",
        &from("[2001:db8:3::130]:61616"),
        now,
    );
    let figure_23 = "</rd/1234>;base=\"coap://[2001:db8:3::127]:61616\";ep=node5;
       et=\"tag:example.com,2020:platform\";ct=40;rt=core.rd-ep,
   </rd/4521>;base=\"coap://[2001:db8:3::129]:61616\";ep=node7;
       et=\"tag:example.com,2020:platform\";ct=40;d=floor-3;
       rt=core.rd-ep";
    let out = eps(&st, "et=tag:example.com,2020:platform", now);
    assert_eq!(semantic(&out), semantic(&unfold(figure_23)));
    assert_eq!(
        out.split(",</").next().unwrap(),
        "</rd/1234>;ep=node5;et=\"tag:example.com,2020:platform\";ct=40;\
         base=\"coap://[2001:db8:3::127]:61616\";rt=core.rd-ep"
    );
}

/// RFC 9176 §10.1.2, Figures 24–26: a commissioning tool registers luminaries, a
/// sensor and a group; a luminary finds its group by sector, endpoint type and
/// resource type. (The figures disagree with each other: Figure 26 queries `rt=light`
/// although the registered resource type is `tag:example.com,2020:light`, which RFC
/// 6690 §4.1 matching does not find, and filters by `d=R2-4-015` although Figure 25
/// registers the group without a sector. Here the query names the resource type in
/// full; the group is registered with the sector for the filtered lookup, and as in
/// Figure 25 for the byte-exact comparison with Figure 26.)
#[test]
fn rfc9176_section_10_lighting() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    let ct = from("[2001:db8:4::ff]:5683");
    let lights = "</light/left>;rt=\"tag:example.com,2020:light\",
   </light/middle>;rt=\"tag:example.com,2020:light\",
   </light/right>;rt=\"tag:example.com,2020:light\"";
    st.reserve_ids(4521);
    assert_eq!(
        register(
            &mut st,
            "ep=lm_R2-4-015_wndw&base=coap://[2001:db8:4::1]&d=R2-4-015",
            lights,
            &ct,
            now
        ),
        4521
    );
    assert_eq!(
        register(
            &mut st,
            "ep=lm_R2-4-015_door&base=coap://[2001:db8:4::2]&d=R2-4-015",
            lights,
            &ct,
            now
        ),
        4522
    );
    assert_eq!(
        register(
            &mut st,
            "ep=ps_R2-4-015_door&base=coap://[2001:db8:4::3]&d=R2-4-015",
            "</ps>;rt=\"tag:example.com,2020:p-sensor\"",
            &ct,
            now
        ),
        4523
    );
    let mut st2 = RdState::new(RdConfig::default());
    st2.reserve_ids(501);
    for s in [&mut st, &mut st2] {
        register(
            s,
            "ep=grp_R2-4-015&et=core.rd-group&base=coap://[ff05::1]&d=R2-4-015",
            lights,
            &ct,
            now,
        );
    }
    let q = "d=R2-4-015&et=core.rd-group&rt=tag:example.com,2020:light";
    let out = eps(&st, q, now);
    assert_eq!(semantic(&out).len(), 1);
    let figure_26 = "</rd/501>;ep=grp_R2-4-015;et=core.rd-group;
             base=\"coap://[ff05::1]\";rt=core.rd-ep";
    let mut st3 = RdState::new(RdConfig::default());
    st3.reserve_ids(501);
    register(
        &mut st3,
        "ep=grp_R2-4-015&et=core.rd-group&base=coap://[ff05::1]",
        lights,
        &ct,
        now,
    );
    assert_eq!(
        eps(&st3, "et=core.rd-group&rt=tag:example.com,2020:light", now),
        unfold(figure_26)
    );
    assert_eq!(
        eps(&st2, q, now),
        "</rd/501>;ep=grp_R2-4-015;d=R2-4-015;et=core.rd-group;base=\"coap://[ff05::1]\";rt=core.rd-ep"
    );
    // The sensor is in the sector but offers no light.
    assert_eq!(
        semantic(&eps(&st, "d=R2-4-015&rt=tag:example.com,2020:light", now)).len(),
        3
    );
}

/// Filtering (RFC 9176 §6.2): resource links inherit their endpoint's attributes,
/// endpoints match through their links, `*` matches prefixes, href and anchor in URI
/// form.
#[test]
fn lookup_filtering() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    let a = register(
        &mut st,
        "ep=a&d=s1&et=oven",
        "</temp>;rt=\"temperature-c sensor\";if=sensor,</t>;anchor=\"/temp\";rel=alternate",
        &from("10.0.0.1:5683"),
        now,
    );
    register(
        &mut st,
        "ep=b&base=coap://b.example",
        "</light>;rt=light-lux;obs",
        &from("10.0.0.2:5683"),
        now,
    );
    assert_eq!(
        res(&st, "rt=light*", now),
        "<coap://b.example/light>;rt=light-lux;obs"
    );
    assert_eq!(
        res(&st, "rt=sensor", now),
        "<coap://10.0.0.1/temp>;rt=\"temperature-c sensor\";if=sensor"
    );
    // Endpoint attributes select resource links.
    assert_eq!(semantic(&res(&st, "d=s1", now)).len(), 2);
    assert_eq!(semantic(&res(&st, "et=oven&rt=temp*", now)).len(), 1);
    assert_eq!(semantic(&res(&st, "base=coap://b.*", now)).len(), 1);
    assert_eq!(semantic(&res(&st, &format!("href=/rd/{a}"), now)).len(), 2);
    // href and anchor match resolved URIs.
    assert_eq!(
        res(&st, "href=coap://b.example/light", now),
        "<coap://b.example/light>;rt=light-lux;obs"
    );
    assert_eq!(res(&st, "href=/light", now), "");
    assert_eq!(
        res(&st, "anchor=coap://10.0.0.1/temp", now),
        "<coap://10.0.0.1/t>;anchor=\"coap://10.0.0.1/temp\";rel=alternate"
    );
    // A bare name matches links that have the attribute.
    assert_eq!(semantic(&res(&st, "obs", now)).len(), 1);
    // Endpoint lookup: through endpoint attributes or any resource link.
    assert_eq!(
        eps(&st, "rt=light-lux", now),
        "</rd/2>;ep=b;base=\"coap://b.example\";rt=core.rd-ep"
    );
    assert_eq!(semantic(&eps(&st, "rt=core.rd-ep", now)).len(), 2);
    assert_eq!(semantic(&eps(&st, "ep=*", now)).len(), 2);
    assert_eq!(eps(&st, "ep=b&rt=temp*", now), "");
    assert_eq!(
        eps(&st, "", now),
        "</rd/1>;ep=a;d=s1;et=oven;base=\"coap://10.0.0.1\";rt=core.rd-ep,\
         </rd/2>;ep=b;base=\"coap://b.example\";rt=core.rd-ep"
    );
    // Resource lookups do not see the endpoint's rt.
    assert_eq!(res(&st, "rt=core.rd-ep", now), "");
}

/// Lookups skip parsing links whose text cannot hold a match; quoted-string escapes
/// (RFC 6690 §2: `\x` in a quoted value is `x`) must not hide a match from that shortcut.
#[test]
fn lookup_filtering_escaped_values() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    register(
        &mut st,
        "ep=c",
        "</a>;rt=\"te\\mp\",</b>;rt=other",
        &from("10.0.0.3:5683"),
        now,
    );
    assert_eq!(
        res(&st, "rt=temp", now),
        "<coap://10.0.0.3/a>;rt=\"te\\mp\""
    );
    assert_eq!(
        res(&st, "rt=tem*", now),
        "<coap://10.0.0.3/a>;rt=\"te\\mp\""
    );
    assert_eq!(semantic(&eps(&st, "rt=temp", now)).len(), 1);
    assert_eq!(res(&st, "rt=tmp", now), "");
    // A criterion met by the endpoint, another by one link.
    assert_eq!(
        res(&st, "ep=c&rt=other", now),
        "<coap://10.0.0.3/b>;rt=other"
    );
    assert_eq!(res(&st, "ep=d&rt=other", now), "");
}

/// RFC 9176 §5 and §7.5: (ep, d) collisions.
#[test]
fn collisions_first_come_first_remembered() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    let owner = from("10.0.0.1:5000");
    let other = from("10.0.0.2:5000");
    let id = register(&mut st, "ep=n&lt=60", "</a>", &owner, now);
    // The same endpoint again: same resource, content replaced.
    let m = st
        .plan_register(
            &params("ep=n&lt=100"),
            b"</b>",
            None,
            &owner,
            false,
            now + secs(1),
        )
        .unwrap();
    assert_eq!((m.id(), m.is_created()), (Some(id), false));
    st.apply(m);
    assert_eq!(st.get(id).unwrap().links_document(), "</b>");
    assert_eq!(st.get(id).unwrap().lifetime(), 100);
    assert_eq!(st.len(), 1);
    // Another endpoint: refused while active, in any operation.
    let err = st
        .plan_register(&params("ep=n"), b"</c>", None, &other, false, now + secs(2))
        .unwrap_err();
    assert_eq!(err.code(), Code::FORBIDDEN);
    assert!(matches!(
        st.plan_update(id, &params(""), b"", None, &other, now)
            .unwrap_err(),
        RdError::Forbidden
    ));
    assert!(matches!(
        st.plan_remove(id, &other).unwrap_err(),
        RdError::Forbidden
    ));
    // Another port of the same address is another endpoint.
    assert!(st
        .plan_register(
            &params("ep=n"),
            b"",
            None,
            &from("10.0.0.1:5001"),
            false,
            now
        )
        .is_err());
    // Another sector is another name.
    assert!(st
        .plan_register(&params("ep=n&d=x"), b"", None, &other, false, now)
        .is_ok());
    // After expiry the name is free; the old resource is replaced by a new one.
    let later = now + secs(102);
    let m = st
        .plan_register(&params("ep=n"), b"</c>", None, &other, false, later)
        .unwrap();
    assert!(m.is_created());
    assert_eq!(m.removed(), [id]);
    let new_id = m.id().unwrap();
    assert_ne!(new_id, id);
    st.apply(m);
    assert!(st.get(id).is_none());
    assert_eq!(st.find(None, "n").unwrap().id(), new_id);
    // SameHost: any port of the registering address.
    let cfg = RdConfig {
        access_policy: AccessPolicy::SameHost,
        ..RdConfig::default()
    };
    let mut st = RdState::new(cfg);
    let id = register(
        &mut st,
        "ep=n",
        "",
        &Requester::new("10.0.0.1:1".parse().unwrap(), AccessPolicy::SameHost),
        now,
    );
    let same_host = Requester::new("10.0.0.1:2".parse().unwrap(), AccessPolicy::SameHost);
    assert!(st.plan_remove(id, &same_host).is_ok());
    // Open: anyone.
    let mut st = RdState::new(RdConfig {
        access_policy: AccessPolicy::Open,
        ..RdConfig::default()
    });
    let id = register(&mut st, "ep=n", "", &owner, now);
    assert!(st.plan_remove(id, &other).is_ok());
}

/// RFC 9176 §5.3.1: what an update changes.
#[test]
fn update_semantics() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    let who = from("[2001:db8::1]:7000");
    let id = register(&mut st, "ep=u&lt=100&et=a&et=b&x=1", "</a>", &who, now);
    assert_eq!(st.get(id).unwrap().base(), "coap://[2001:db8::1]:7000");
    // No parameters: lifetime reset from the update's time, with the old lt.
    st.apply(
        st.plan_update(id, &params(""), b"", None, &who, now + secs(50))
            .unwrap(),
    );
    let r = st.get(id).unwrap();
    assert_eq!(r.expires(), now + secs(150));
    assert_eq!(r.links_document(), "</a>");
    // lt, extra attributes by name, a new link payload.
    st.apply(
        st.plan_update(
            id,
            &params("lt=10&et=c&y"),
            b"</z>;rt=q",
            Some(40),
            &who,
            now + secs(60),
        )
        .unwrap(),
    );
    let r = st.get(id).unwrap();
    assert_eq!(r.lifetime(), 10);
    assert_eq!(r.expires(), now + secs(70));
    assert_eq!(
        r.extra_attrs(),
        [
            ("x".to_owned(), Some("1".to_owned())),
            ("et".to_owned(), Some("c".to_owned())),
            ("y".to_owned(), None)
        ]
    );
    assert_eq!(
        res(&st, "ep=u", now + secs(60)),
        "<coap://[2001:db8::1]:7000/z>;rt=q"
    );
    // ep and d cannot change; unknown registrations are 4.04.
    assert!(st
        .plan_update(id, &params("ep=v"), b"", None, &who, now)
        .is_err());
    assert!(st
        .plan_update(id, &params("ep=u"), b"", None, &who, now)
        .is_ok());
    assert!(matches!(
        st.plan_update(999, &params(""), b"", None, &who, now)
            .unwrap_err(),
        RdError::NotFound
    ));
    // An update of an expired (retained) registration revives it.
    let late = now + secs(1000);
    assert_eq!(res(&st, "ep=u", late), "");
    st.apply(
        st.plan_update(id, &params(""), b"", None, &who, late)
            .unwrap(),
    );
    assert_eq!(res(&st, "ep=u", late), "<coap://[2001:db8::1]:7000/z>;rt=q");
    // Without an explicit base, the update's source becomes the base (open policy so
    // another address may update).
    let mut st = RdState::new(RdConfig {
        access_policy: AccessPolicy::Open,
        ..RdConfig::default()
    });
    let id = register(&mut st, "ep=m", "</a>", &who, now);
    st.apply(
        st.plan_update(id, &params(""), b"", None, &from("[2001:db8::2]:5683"), now)
            .unwrap(),
    );
    assert_eq!(st.get(id).unwrap().base(), "coap://[2001:db8::2]");
    // An explicit base stays until changed.
    st.apply(
        st.plan_update(id, &params("base=coap://e.example"), b"", None, &who, now)
            .unwrap(),
    );
    st.apply(
        st.plan_update(id, &params(""), b"", None, &from("[2001:db8::3]:1"), now)
            .unwrap(),
    );
    assert_eq!(st.get(id).unwrap().base(), "coap://e.example");
    // Removal.
    let m = st.plan_remove(id, &who).unwrap();
    st.apply(m);
    assert!(st.is_empty());
    assert!(matches!(
        st.plan_remove(id, &who).unwrap_err(),
        RdError::NotFound
    ));
}

/// Lifetimes against the `now` passed in; expiry and garbage collection.
#[test]
fn lifetimes_and_expiry() {
    let cfg = RdConfig {
        expired_retention: secs(100),
        ..RdConfig::default()
    };
    let mut st = RdState::new(cfg);
    let now = t0();
    let who = from("10.0.0.1:5683");
    let regular = register(&mut st, "ep=r&lt=10", "</r>", &who, now);
    let m = st
        .plan_register(&params("ep=s&lt=20"), b"</s>", Some(40), &who, true, now)
        .unwrap();
    let simple = m.id().unwrap();
    st.apply(m);
    assert_eq!(st.next_deadline(now), Some(now + secs(10)));
    assert_eq!(semantic(&res(&st, "", now + secs(9))).len(), 2);
    assert_eq!(res(&st, "", now + secs(10)), "<coap://10.0.0.1/s>");
    assert!(st.expired_between(now, now + secs(10)));
    assert!(!st.expired_between(now + secs(10), now + secs(15)));
    assert!(st.plan_expire(now + secs(10)).is_empty());
    assert_eq!(st.next_deadline(now + secs(10)), Some(now + secs(20)));
    // The simple registration goes at its expiry.
    let m = st.plan_expire(now + secs(20));
    assert_eq!(m.removed(), [simple]);
    st.apply(m);
    // The regular one after the retention.
    assert_eq!(st.next_deadline(now + secs(20)), Some(now + secs(110)));
    assert!(st.plan_expire(now + secs(109)).is_empty());
    let m = st.plan_expire(now + secs(110));
    assert_eq!(m.removed(), [regular]);
    st.apply(m);
    assert!(st.is_empty());
    assert_eq!(st.next_deadline(now), None);
    // Default lifetime.
    let id = register(&mut st, "ep=d", "", &who, now);
    assert_eq!(st.get(id).unwrap().expires(), now + secs(90_000));
}

/// Hard limits.
#[test]
fn limits() {
    let cfg = RdConfig {
        max_registrations: 2,
        max_links_per_registration: 2,
        max_payload: 64,
        max_lookup_links: 3,
        max_lookup_bytes: 100,
        max_total_payload: 400,
        ..RdConfig::default()
    };
    let mut st = RdState::new(cfg);
    let now = t0();
    let who = from("10.0.0.1:5683");
    let plan = |st: &RdState, q: &str, payload: &str, now| {
        st.plan_register(&params(q), payload.as_bytes(), None, &who, false, now)
    };
    assert!(matches!(
        plan(&st, "ep=a", &"x".repeat(65), now).unwrap_err(),
        RdError::PayloadTooLarge { limit: 64 }
    ));
    assert_eq!(
        plan(&st, "ep=a", "</1>,</2>,</3>", now).unwrap_err().code(),
        Code::BAD_REQUEST
    );
    assert_eq!(
        plan(&st, "ep=a", "<bad", now).unwrap_err().code(),
        Code::BAD_REQUEST
    );
    assert_eq!(
        st.plan_register(&params("ep=a"), b"</1>", Some(0), &who, false, now)
            .unwrap_err()
            .code(),
        Code::UNSUPPORTED_CONTENT_FORMAT
    );
    assert_eq!(
        st.plan_register(&params("ep=a"), b"\xff", None, &who, false, now)
            .unwrap_err()
            .code(),
        Code::BAD_REQUEST
    );
    assert_eq!(
        plan(&st, "", "", now).unwrap_err().code(),
        Code::BAD_REQUEST
    );
    let a = register(&mut st, "ep=a&lt=5", "</1>,</2>", &who, now);
    register(&mut st, "ep=b", "</3>,</4>", &who, now);
    // Full: 5.03 while nothing expired.
    let full = plan(&st, "ep=c", "", now).unwrap_err();
    assert!(matches!(full, RdError::Full));
    assert_eq!(
        full.to_response()
            .options
            .get_uint(corium::OptionNumber::MAX_AGE),
        Some(60)
    );
    // Replacing an existing one is not growth.
    assert!(plan(&st, "ep=b", "</5>", now).is_ok());
    // An expired registration is evicted to make room.
    let m = plan(&st, "ep=c", "", now + secs(6)).unwrap();
    assert_eq!(m.removed(), [a]);
    st.apply(m);
    assert_eq!(st.len(), 2);
    // Lookup limits: more than 3 links is refused unless paginated.
    register(&mut st, "ep=c", "</5>,</6>", &who, now + secs(6));
    let err = st
        .lookup(LookupKind::Resource, &query(""), None, now + secs(6))
        .unwrap_err();
    assert!(
        matches!(err, RdError::ResultTooLarge { unit: "links", .. }),
        "{err}"
    );
    assert_eq!(err.code(), Code::BAD_REQUEST);
    assert_eq!(semantic(&res(&st, "count=3", now + secs(6))).len(), 3);
    assert_eq!(
        semantic(&res(&st, "count=3&page=1", now + secs(6))).len(),
        1
    );
    // Bytes: the two resolved links are 39 and 46 bytes, more than 50 together.
    let st2 = {
        let mut s = RdState::new(RdConfig {
            max_lookup_bytes: 50,
            ..RdConfig::default()
        });
        register(
            &mut s,
            "ep=a",
            "</aaaaaaaaaaaaaaaaaaaa>,</bbbbbbbbbbbbbbbbbbbbbbbbbbb>",
            &who,
            now,
        );
        s
    };
    assert!(matches!(
        st2.lookup(LookupKind::Resource, &query(""), None, now)
            .unwrap_err(),
        RdError::ResultTooLarge { unit: "bytes", .. }
    ));
    // Total memory for links.
    let mut st3 = RdState::new(RdConfig {
        max_total_payload: 700,
        ..RdConfig::default()
    });
    register(&mut st3, "ep=a", &"</x>,".repeat(20), &who, now);
    assert!(matches!(
        st3.plan_register(
            &params("ep=b"),
            "</y>,".repeat(20).as_bytes(),
            None,
            &who,
            false,
            now
        )
        .unwrap_err(),
        RdError::Full
    ));
}

/// RFC 9176 §6.1 / §6.4: registrations with a link-local base are shown only to the
/// link they came from; a link-local base cannot be registered from elsewhere.
#[test]
fn link_local_visibility() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    let local = from("[fe80::1%3]:5683");
    register(&mut st, "ep=ll", "</x>", &local, now);
    assert_eq!(st.get(1).unwrap().base(), "coap://[fe80::1]");
    let see = |peer: Option<&str>| {
        st.lookup(
            LookupKind::Resource,
            &query(""),
            peer.map(|p| p.parse().unwrap()),
            now,
        )
        .unwrap()
    };
    assert_eq!(see(Some("[fe80::2%3]:1")), "<coap://[fe80::1]/x>");
    assert_eq!(see(Some("[fe80::2%4]:1")), "");
    assert_eq!(see(Some("[2001:db8::2]:1")), "");
    assert_eq!(see(None), "");
    let err = st
        .plan_register(
            &params("ep=x&base=coap://[fe80::9]"),
            b"",
            None,
            &from("[2001:db8::1]:1"),
            false,
            now,
        )
        .unwrap_err();
    assert_eq!(err.code(), Code::BAD_REQUEST);
}

/// What the store gets restores the same registration.
#[test]
fn store_round_trip() {
    let mut st = RdState::new(RdConfig::default());
    let now = t0();
    let who = from("[2001:db8::1]:7000");
    let id = register(
        &mut st,
        "ep=p&d=s&lt=77&et=x&flag&base=coap://p.example",
        RFC6690_SIXTH,
        &who,
        now,
    );
    let m = st.plan_remove(id, &who).unwrap();
    assert_eq!(m.store_ops(|_| 0), [StoreOp::Remove(id)]);
    let m = st
        .plan_update(id, &params(""), b"", None, &who, now)
        .unwrap();
    let ops = m.store_ops(|t| if t == now + secs(77) { 1234 } else { 0 });
    let [StoreOp::Put(stored)] = &ops[..] else {
        panic!("expected one put: {ops:?}")
    };
    assert_eq!(stored.expires_at, 1234);
    assert_eq!(stored.owner, who.identity.as_str());
    let mut restored = RdState::new(RdConfig::default());
    restored.restore(stored.clone(), now + secs(77)).unwrap();
    restored.reserve_ids(50);
    for q in ["", "et=x", "rt=temp*"] {
        assert_eq!(res(&restored, q, now), res(&st, q, now));
        assert_eq!(eps(&restored, q, now), eps(&st, q, now));
    }
    // The restored owner is still the owner; ids continue above the reserved ones.
    assert!(restored.plan_remove(id, &who).is_ok());
    let m = restored
        .plan_register(&params("ep=new"), b"", None, &who, false, now)
        .unwrap();
    assert_eq!(m.id(), Some(50));
}

/// The attribute index narrows lookups down without changing any result: every query
/// over a varied directory answers the same as a full scan, pagination included.
#[test]
fn index_gives_the_same_results_as_scanning() {
    let now = t0();
    let mut st = RdState::new(RdConfig::default());
    let docs = [
        "</s/t>;rt=\"temperature-c sensor\";if=sensor;ct=40,</s/h>;rt=humidity;obs",
        "</a>;anchor=\"/x\";rel=\"describedby alternate\";title=\"a \\\"quoted\\\" one\"",
        "</l>;rt=light;if=\"core.a core.s\";ct=\"0 40\"",
        "<coap://other/t>;rt=temperature-c;RT=Upper;ct=0",
        "",
    ];
    for i in 0..40u64 {
        let who = from(&format!("[2001:db8::{}]:5683", i % 7 + 1));
        let q = format!(
            "ep=node{i}&d={}&et=type{}{}",
            ["floor1", "floor2"][(i % 2) as usize],
            i % 3,
            if i % 5 == 0 { "&flag&x=\"y z\"" } else { "" }
        );
        register(&mut st, &q, docs[(i % 5) as usize], &who, now);
    }
    // Some registrations change and go.
    let m = st.plan_remove(4, &from("[2001:db8::4]:5683")).unwrap();
    st.apply(m);
    let m = st
        .plan_update(
            6,
            &params("et=changed"),
            b"</new>;rt=fresh",
            Some(40),
            &from("[2001:db8::6]:5683"),
            now,
        )
        .unwrap();
    st.apply(m);
    let queries = [
        "",
        "rt=temperature-c",
        "rt=temp*",
        "rt=sensor",
        "rt=*",
        "rt=upper",
        "RT=Upper",
        "if=core.s",
        "ct=40",
        "ct=0",
        "ct=4*",
        "obs",
        "obs=",
        "ep=node7",
        "ep=node1*",
        "d=floor2&rt=light",
        "d=floor1&ct=0",
        "et=type1&rt=humidity",
        "et=changed",
        "rt=fresh",
        "rt=core.rd-ep",
        "rel=alternate",
        "title=a \"quoted\" one",
        "title=a*",
        "title=quoted",
        "anchor=coap*",
        "href=/rd/1*",
        "href=coap://other/t",
        "base=coap*",
        "flag",
        "x=y z",
        "x=z",
        "nothing=here",
        "rt=temp*&page=1&count=3",
        "ep=node2*&page=0&count=2",
    ];
    for q in queries {
        for kind in [LookupKind::Endpoint, LookupKind::Resource] {
            st.use_index = true;
            let indexed = st.lookup(kind, &query(q), None, now);
            st.use_index = false;
            let scanned = st.lookup(kind, &query(q), None, now);
            assert_eq!(
                indexed.map_err(|e| e.to_string()),
                scanned.map_err(|e| e.to_string()),
                "{kind:?} {q}"
            );
        }
    }
    st.use_index = true;
    assert!(!res(&st, "rt=temp*", now).is_empty());
    assert!(!eps(&st, "et=changed", now).is_empty());
}

/// A registration made under a security identity (DTLS PSK, OSCORE) is bound to that
/// identity, not to the address (RFC 9176 §7.5): the same identity may change it from
/// another address, nobody else may, not even from the registrant's address.
#[test]
fn security_identities_own_registrations() {
    let now = t0();
    let mut st = RdState::new(RdConfig::default());
    let addr: SocketAddr = "[2001:db8::1]:5684".parse().unwrap();
    let moved: SocketAddr = "[2001:db8::9]:40000".parse().unwrap();
    let policy = AccessPolicy::SameEndpoint;
    let alice = Requester::secured(addr, policy, SecurityKind::DtlsPsk, "alice");
    let id = register(&mut st, "ep=sensor", "</t>", &alice, now);
    let alice_moved = Requester::secured(moved, policy, SecurityKind::DtlsPsk, "alice");
    let m = st
        .plan_update(id, &params("lt=60"), b"", None, &alice_moved, now)
        .unwrap();
    st.apply(m);
    let mallory = Requester::secured(addr, policy, SecurityKind::DtlsPsk, "mallory");
    let plain = Requester::new(addr, policy);
    let oscore = Requester::secured(addr, policy, SecurityKind::Oscore, "alice");
    for who in [&mallory, &plain, &oscore] {
        assert!(matches!(st.plan_remove(id, who), Err(RdError::Forbidden)));
        assert!(matches!(
            st.plan_register(&params("ep=sensor"), b"</x>", None, who, false, now),
            Err(RdError::Forbidden)
        ));
    }
    // An identity is kept unambiguous.
    assert_ne!(
        Identity::of_security(policy, SecurityKind::DtlsPsk, "a:1"),
        Identity::of_security(policy, SecurityKind::DtlsPsk, "a").clone()
    );
    let m = st.plan_remove(id, &alice_moved).unwrap();
    st.apply(m);
    assert!(st.is_empty());
}
