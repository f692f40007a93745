//! Rendering one vhost + pool pair, and 10,000 of them, three ways in one group: enconf's
//! renderer, the same output from a general template engine (minijinja, the baseline), and a
//! plain copy of the same bytes (`copy_from_slice`, the floor).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use enconf_agent_lib::config::AgentConfig;
use enconf_agent_lib::render::Renderer;
use enconf_core::domain::AccountSpec;
use enconf_core::protocol::agent::AccountPut;

const VHOST: &str =
    "# Managed by enconf for account {{ user }}. Do not edit: the agent rewrites this file.
server {
    listen {{ port }};
    server_name{% for d in domains %} {{ d }}{% endfor %};
    root {{ base }}/{{ user }}/public;
    index index.php index.html;
    access_log {{ logdir }}/enconf-access.log enconf_vhost;
    client_max_body_size {{ upload }}m;

    location / {
        try_files $uri $uri/ /index.php$is_args$args;
    }

    location ~ \\.php$ {
        try_files $uri =404;
        include {{ params }};
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_pass unix:{{ sockets }}/enconf-{{ user }}.sock;
        fastcgi_read_timeout {{ timeout + 30 }}s;
    }

    location ~ /\\.(?!well-known/) {
        deny all;
    }
}
";

const POOL: &str =
    "; Managed by enconf for account {{ user }}. Do not edit: the agent rewrites this file.
[{{ user }}]
user = {{ user }}
group = {{ user }}
listen = {{ sockets }}/enconf-{{ user }}.sock
listen.owner = {{ web }}
listen.group = {{ web }}
listen.mode = 0660
pm = ondemand
pm.max_children = {{ children }}
pm.process_idle_timeout = 10s
pm.max_requests = 500
chdir = /
php_admin_value[memory_limit] = {{ memory }}M
php_admin_value[upload_max_filesize] = {{ upload }}M
php_admin_value[post_max_size] = {{ upload }}M
php_admin_value[max_execution_time] = {{ timeout }}
php_admin_value[open_basedir] = {{ base }}/{{ user }}/
php_admin_value[upload_tmp_dir] = {{ base }}/{{ user }}/tmp
php_admin_value[session.save_path] = {{ base }}/{{ user }}/tmp
php_admin_value[sys_temp_dir] = {{ base }}/{{ user }}/tmp
php_admin_flag[log_errors] = on
php_admin_value[error_log] = {{ base }}/{{ user }}/logs/php-error.log
";

#[derive(serde::Serialize)]
struct Ctx<'a> {
    user: &'a str,
    domains: Vec<&'a str>,
    port: u16,
    base: &'a str,
    logdir: &'a str,
    params: &'a str,
    sockets: &'a str,
    web: &'a str,
    upload: u32,
    timeout: u32,
    memory: u32,
    children: u32,
}

fn specs(n: usize) -> Vec<AccountSpec> {
    (0..n)
        .map(|i| {
            AccountPut {
                username: Some(format!("user{i}")),
                domains: Some(vec![
                    format!("site{i}.example.com"),
                    format!("www.site{i}.example.com"),
                ]),
                php_version: None,
                php: None,
                roles: None,
                zones: None,
                db: None,
                backup: None,
            }
            .validate("", None)
            .unwrap()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let values: BTreeMap<String, String> = [("AGENT_TOKEN", "0123456789abcdef")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let layout = AgentConfig::from_values(&values).unwrap().layout;
    let renderer = Renderer::new(&layout);
    let mut env = minijinja::Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .unwrap(),
    );
    env.add_template("vhost", VHOST).unwrap();
    env.add_template("pool", POOL).unwrap();
    let (vhost_t, pool_t) = (
        env.get_template("vhost").unwrap(),
        env.get_template("pool").unwrap(),
    );
    let (base, logdir) = (
        layout.web_root_base.display().to_string(),
        layout.nginx_log_dir.display().to_string(),
    );
    let (params, sockets) = (
        layout.nginx_fastcgi_params.display().to_string(),
        layout.php_fpm_socket_dir.display().to_string(),
    );
    let jinja = |s: &AccountSpec, out: &mut Vec<u8>| {
        let ctx = Ctx {
            user: s.username.as_str(),
            domains: s.domains.iter().map(|d| d.as_str()).collect(),
            port: layout.http_port,
            base: &base,
            logdir: &logdir,
            params: &params,
            sockets: &sockets,
            web: &layout.web_server_user,
            upload: s.php.upload_max_mb(),
            timeout: s.php.max_execution_time_s(),
            memory: s.php.memory_limit_mb(),
            children: s.php.max_children(),
        };
        let ctx = minijinja::Value::from(minijinja::value::Serde(&ctx));
        out.extend_from_slice(vhost_t.render(&ctx).unwrap().as_bytes());
        out.extend_from_slice(pool_t.render(&ctx).unwrap().as_bytes());
    };
    let ours = |s: &AccountSpec, out: &mut String| {
        renderer.vhost_into(out, s);
        renderer.pool_into(out, s);
    };

    for n in [1usize, 10_000] {
        let specs = specs(n);
        // The three produce the same bytes.
        let mut expected = Vec::new();
        for s in &specs {
            let mut one = String::new();
            ours(s, &mut one);
            let mut theirs = Vec::new();
            jinja(s, &mut theirs);
            assert_eq!(
                one,
                String::from_utf8(theirs).unwrap(),
                "minijinja output differs"
            );
            expected.push(one.clone().into_bytes());
        }
        let mut group = c.benchmark_group(if n == 1 { "render_pair" } else { "render_10k" });
        group.throughput(Throughput::Elements(n as u64));
        let mut out = String::with_capacity(4096);
        group.bench_function("enconf", |b| {
            b.iter(|| {
                for s in &specs {
                    out.clear();
                    ours(black_box(s), &mut out);
                    black_box(&out);
                }
            })
        });
        let mut bytes = Vec::with_capacity(4096);
        group.bench_function("minijinja", |b| {
            b.iter(|| {
                for s in &specs {
                    bytes.clear();
                    jinja(black_box(s), &mut bytes);
                    black_box(&bytes);
                }
            })
        });
        let mut floor = vec![0u8; 4096];
        group.bench_function("memcpy_floor", |b| {
            b.iter(|| {
                for e in &expected {
                    floor[..e.len()].copy_from_slice(black_box(e));
                    black_box(&floor);
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
