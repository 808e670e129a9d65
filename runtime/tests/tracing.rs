//! The `tracing` feature: every spawned task gets a span (id, spawn site,
//! parent task) that subscribers see nested under its spawner's span.
//! Run by `make test`: `cargo test -p vedart --features tracing --test tracing`.
#![cfg(all(feature = "tracing", not(feature = "loom")))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// What the test subscriber saw of one task span.
#[derive(Clone, Debug, Default)]
struct TaskSpan {
    fields: HashMap<String, String>,
    /// The `task.id` of the enclosing span, if that is a task span.
    parent_span_task: Option<String>,
}

/// An event's message, and the `task.id` of the span current at it.
type SeenEvent = (String, Option<String>);

#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<TaskSpan>>>,
    events: Arc<Mutex<Vec<SeenEvent>>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

/// The `task.id` stored with a span by `on_new_span`.
struct TaskIdExt(String);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != "vedart::task" {
            return;
        }
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let span = ctx.span(id).expect("the new span");
        let parent_span_task = span
            .parent()
            .and_then(|parent| parent.extensions().get::<TaskIdExt>().map(|t| t.0.clone()));
        if let Some(task_id) = fields.get("task.id") {
            span.extensions_mut().insert(TaskIdExt(task_id.clone()));
        }
        self.spans.lock().unwrap().push(TaskSpan {
            fields,
            parent_span_task,
        });
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let task = ctx
            .lookup_current()
            .and_then(|span| span.extensions().get::<TaskIdExt>().map(|t| t.0.clone()));
        let message = fields.remove("message").unwrap_or_default();
        self.events.lock().unwrap().push((message, task));
    }
}

#[test]
fn each_task_has_a_span_with_its_id_site_and_parent() {
    let recorder = Recorder::default();
    let subscriber = Registry::default().with(recorder.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    // A current-thread runtime: every poll runs on this thread, where the
    // subscriber is the default.
    let rt = vedart::Builder::new_current_thread().build().unwrap();
    let (outer_id, inner_id) = rt.block_on(async {
        let outer = vedart::spawn(async {
            tracing::info!("in outer");
            let inner = vedart::spawn(async {
                tracing::info!("in inner");
            });
            let inner_id = inner.id();
            inner.await.unwrap();
            inner_id
        });
        let outer_id = outer.id();
        (outer_id, outer.await.unwrap())
    });

    let spans = recorder.spans.lock().unwrap().clone();
    let find = |id: vedart::TaskId| {
        spans
            .iter()
            .find(|span| span.fields.get("task.id") == Some(&id.to_string()))
            .unwrap_or_else(|| panic!("no span for task {id}: {spans:?}"))
            .clone()
    };
    let outer = find(outer_id);
    let inner = find(inner_id);
    // The spawn site is the task's name.
    assert!(
        outer.fields["task.name"].contains("tests/tracing.rs:"),
        "{outer:?}"
    );
    assert_ne!(outer.fields["task.name"], inner.fields["task.name"]);
    // Spawned from block_on, outside any task: no parent task.
    assert_eq!(outer.fields.get("task.parent"), None);
    assert_eq!(outer.parent_span_task, None);
    // The inner task's parent is the outer task, by field and by span nesting.
    assert_eq!(inner.fields.get("task.parent"), Some(&outer_id.to_string()));
    assert_eq!(inner.parent_span_task, Some(outer_id.to_string()));

    // Events inside a task are inside its span.
    let events = recorder.events.lock().unwrap().clone();
    assert!(
        events.contains(&("in outer".to_owned(), Some(outer_id.to_string()))),
        "{events:?}"
    );
    assert!(
        events.contains(&("in inner".to_owned(), Some(inner_id.to_string()))),
        "{events:?}"
    );
}

#[test]
fn join_set_spawns_are_spanned_at_the_call_site() {
    let recorder = Recorder::default();
    let _default = tracing::subscriber::set_default(Registry::default().with(recorder.clone()));
    let rt = vedart::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let mut set = vedart::task::JoinSet::new();
        for i in 0..3 {
            set.spawn(async move { i });
        }
        while set.join_next().await.is_some() {}
    });
    let spans = recorder.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 3, "{spans:?}");
    for span in &spans {
        assert!(
            span.fields["task.name"].contains("tests/tracing.rs:"),
            "{span:?}"
        );
    }
}
