/* csp._speedups: the compiled twin of csp._waiter._WaiterCore (issue 18).
 *
 * What every parked csp operation awaits is a Waiter (csp/_waiter.py). Its fields, its
 * constructor and its park (__await__) are the part that runs on every hand-off; in pure
 * Python the park is a generator: a frame made, resumed and finished per park. Here the
 * Waiter is its own iterator: `await w` costs one C call to park and one to resume, and
 * the constructor is a C function. Everything else about the Waiter (completion,
 * withdrawal, the Future-like protocol asyncio's Task uses) stays Python, in the
 * subclass csp._waiter.Waiter.
 *
 * One behaviour, two builds: _WaiterCore in csp/_waiter.py is the pure-Python twin, and
 * CI runs the whole suite in both modes (CSP_NO_EXTENSIONS=1 selects the pure one). The
 * rare paths call back into Python: a throw() or close() while parked runs
 * csp._waiter._thrown (the one copy of the cancellation rule), a cancelled waiter's
 * CancelledError is made by csp._waiter._cancelled_error.
 *
 * Invariants (tests/test_waiter.py asserts them in both modes):
 *   - a fresh waiter has _asyncio_future_blocking True, state PENDING, waker None and the
 *     reason and value it was made with; every other field is unset (AttributeError);
 *   - `step` is 1 exactly while a coroutine is suspended at this waiter's yield;
 *   - awaiting a waiter that is not PENDING never yields: it returns, or raises
 *     CancelledError if the waiter was withdrawn.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *afb; /* _asyncio_future_blocking */
    PyObject *base;
    PyObject *index;
    PyObject *next;
    PyObject *ok;
    PyObject *on_abort;
    PyObject *prev;
    PyObject *q;
    PyObject *reason;
    PyObject *state;
    PyObject *value;
    PyObject *waker;
    int step; /* 1 while suspended at the yield, else 0 */
} Core;

/* ---- the budget and the mode: csp._threads._BudgetCore / _SharedCore -------------
 * Read on every operation and every park: C fields, where the pure twins are slots. */

typedef struct {
    PyObject_HEAD
    Py_ssize_t full;  /* what a refill writes: BUDGET in single mode, 0 in shared mode */
    Py_ssize_t left;  /* operations left before the budget's yield */
    Py_ssize_t parks; /* parks in shared mode since the last switch-back check */
} Budget;

typedef struct {
    PyObject_HEAD
    char on; /* shared mode (csp._threads) */
} Shared;

static PyMemberDef budget_members[] = {
    {"full", T_PYSSIZET, offsetof(Budget, full), 0, "What a refill writes."},
    {"left", T_PYSSIZET, offsetof(Budget, left), 0, "Operations left before a yield."},
    {"parks", T_PYSSIZET, offsetof(Budget, parks), 0,
     "Parks in shared mode since the last switch-back check."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject BudgetType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "csp._speedups.BudgetCore",
    .tp_doc = PyDoc_STR("The compiled core of csp._threads._Budget: its two counts."),
    .tp_basicsize = sizeof(Budget),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_members = budget_members,
};

static PyMemberDef shared_members[] = {
    {"on", T_BOOL, offsetof(Shared, on), 0, "Shared mode: another thread may use csp."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject SharedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "csp._speedups.SharedCore",
    .tp_doc = PyDoc_STR("The compiled core of csp._threads._Shared: the mode flag."),
    .tp_basicsize = sizeof(Shared),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_members = shared_members,
};

/* isinstance(ob, base) for the cores, whose instances are of Python subclasses (Waiter
 * of WaiterCore, Chan of _BaseChan of ChanCore), without walking the MRO */
static inline int
is_a(PyObject *ob, PyTypeObject *base)
{
    /* (exact for these bases: they add C fields, so every subclass has them on its
     * chain of solid bases, tp_base) */
    for (PyTypeObject *tp = Py_TYPE(ob); tp != NULL; tp = tp->tp_base) {
        if (tp == base) {
            return 1;
        }
    }
    return 0;
}

/* set once by setup(), from csp/_waiter.py */
static Budget *g_budget;            /* csp._threads.budget */
static PyObject *g_waiter_cls;      /* csp._waiter.Waiter: its complete is core_complete */

/* Waiters freed, kept for reuse by parks made in C (waiter_alloc) */
#define W_FREE_MAX 64
static Core *w_free[W_FREE_MAX];
static int w_nfree;
static PyObject *g_thrown;          /* csp._waiter._thrown(w, exc) -> re-raise? */
static PyObject *g_park_shared;     /* csp._waiter._park_in_shared_mode() */
static PyObject *g_cancelled_error; /* csp._waiter._cancelled_error(msg) */
static PyObject *g_pending;         /* csp._waiter.PENDING */
static PyObject *g_cancelled;       /* csp._waiter.CANCELLED */
static PyObject *g_done;            /* csp._waiter.DONE */
static PyObject *g_get_running_loop; /* asyncio's C _get_running_loop */
static PyObject *s_withdraw, *s_sched, *s_draining, *s_loop, *s_is_closed, *s_wake;
static PyObject *s_complete, *s_q, *s_prev, *s_next, *s_value, *s_take, *s_give;
static PyObject *s_full, *s_left;

/* a fresh waiter's fields (the constructor, and ChanOp's park) */
static int
core_setup(Core *self, PyObject *reason, PyObject *value)
{
    if (g_pending == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "csp._speedups.setup() was not called");
        return -1;
    }
    Py_XSETREF(self->afb, Py_NewRef(Py_True));
    Py_XSETREF(self->state, Py_NewRef(g_pending));
    Py_XSETREF(self->reason, Py_NewRef(reason));
    Py_XSETREF(self->value, Py_NewRef(value));
    Py_XSETREF(self->waker, Py_NewRef(Py_None));
    self->step = 0;
    return 0;
}

static int
core_init(Core *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"reason", "value", NULL};
    PyObject *reason, *value = Py_None;
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (kwds == NULL && n >= 1 && n <= 2) {
        reason = PyTuple_GET_ITEM(args, 0);
        if (n == 2) {
            value = PyTuple_GET_ITEM(args, 1);
        }
    }
    else if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:Waiter", kwlist, &reason,
                                          &value)) {
        return -1;
    }
    return core_setup(self, reason, value);
}

static int
core_traverse(Core *self, visitproc visit, void *arg)
{
    /* (not the type: a static type; a Python subclass's traverse visits its own) */
    Py_VISIT(self->afb);
    Py_VISIT(self->base);
    Py_VISIT(self->index);
    Py_VISIT(self->next);
    Py_VISIT(self->ok);
    Py_VISIT(self->on_abort);
    Py_VISIT(self->prev);
    Py_VISIT(self->q);
    Py_VISIT(self->reason);
    Py_VISIT(self->state);
    Py_VISIT(self->value);
    Py_VISIT(self->waker);
    return 0;
}

static int
core_clear(Core *self)
{
    Py_CLEAR(self->afb);
    Py_CLEAR(self->base);
    Py_CLEAR(self->index);
    Py_CLEAR(self->next);
    Py_CLEAR(self->ok);
    Py_CLEAR(self->on_abort);
    Py_CLEAR(self->prev);
    Py_CLEAR(self->q);
    Py_CLEAR(self->reason);
    Py_CLEAR(self->state);
    Py_CLEAR(self->value);
    Py_CLEAR(self->waker);
    return 0;
}

static void
core_dealloc(Core *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    core_clear(self);
    if ((PyObject *)tp == g_waiter_cls && w_nfree < W_FREE_MAX) {
        /* kept for waiter_alloc (csp._waiter.Waiter's own dealloc, subtype_dealloc,
         * called this last and then lets go of the type; waiter_alloc takes it again) */
        w_free[w_nfree++] = self;
        return;
    }
    tp->tp_free((PyObject *)self);
}

/* a Waiter (the class csp._waiter registered) with every field unset, for a park made
 * in C: a freed one reused if there is one, as fresh (all fields cleared) */
static Core *
waiter_alloc(void)
{
    PyTypeObject *wt = (PyTypeObject *)g_waiter_cls;
    if (w_nfree > 0) {
        Core *w = w_free[--w_nfree];
        (void)PyObject_Init((PyObject *)w, wt);
        PyObject_GC_Track(w);
        return w;
    }
    return (Core *)wt->tp_alloc(wt, 0);
}

/* the end of a park: CancelledError if withdrawn, else a normal return (NULL with no
 * exception set: StopIteration(None) to the awaiting frame, at no cost) */
static PyObject *
core_finish(Core *self)
{
    if (self->state == g_cancelled) {
        PyObject *exc = PyObject_CallOneArg(g_cancelled_error,
                                            self->value != NULL ? self->value : Py_None);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
    }
    return NULL;
}

static PyObject *
core_iternext(Core *self)
{
    if (g_budget == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "csp._speedups.setup() was not called");
        return NULL;
    }
    if (self->step == 0 && self->state == g_pending) {
        if (g_budget->full == 0) { /* shared mode: now and then, the switch-back check */
            PyObject *r = PyObject_CallNoArgs(g_park_shared);
            if (r == NULL) {
                return NULL;
            }
            Py_DECREF(r);
        }
        g_budget->left = g_budget->full; /* a park: the cooperative budget starts again */
        self->step = 1;
        return Py_NewRef(self);
    }
    self->step = 0;
    return core_finish(self);
}

static PyObject *
core_await(Core *self)
{
    return Py_NewRef(self);
}

static PyObject *
core_send(Core *self, PyObject *value)
{
    PyObject *r = core_iternext(self);
    if (r == NULL && !PyErr_Occurred()) {
        PyErr_SetNone(PyExc_StopIteration);
    }
    return r;
}

/* raise `exc` as it is (no new context: a bare `raise`) */
static void
reraise(PyObject *exc)
{
    PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
}

/* the exception a throw(typ[, val[, tb]]) raises (a generator's rules): new, or NULL */
static PyObject *
throw_exc(PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "throw expected 1 to 3 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *typ = args[0];
    PyObject *val = nargs > 1 ? args[1] : Py_None;
    PyObject *tb = nargs > 2 ? args[2] : Py_None;
    PyObject *exc;
    if (PyExceptionInstance_Check(typ)) {
        if (val != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "instance exception may not have a separate value");
            return NULL;
        }
        exc = Py_NewRef(typ);
    }
    else if (PyExceptionClass_Check(typ)) {
        if (PyObject_TypeCheck(val, (PyTypeObject *)typ)) {
            exc = Py_NewRef(val);
        }
        else if (val == Py_None) {
            exc = PyObject_CallNoArgs(typ);
        }
        else if (PyTuple_Check(val)) {
            exc = PyObject_Call(typ, val, NULL);
        }
        else {
            exc = PyObject_CallOneArg(typ, val);
        }
        if (exc == NULL) {
            return NULL;
        }
        if (!PyExceptionInstance_Check(exc)) {
            PyErr_Format(PyExc_TypeError,
                         "calling %R should have returned an instance of "
                         "BaseException, not %s", typ, Py_TYPE(exc)->tp_name);
            Py_DECREF(exc);
            return NULL;
        }
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "exceptions must be classes or instances deriving from "
                     "BaseException, not %s", Py_TYPE(typ)->tp_name);
        return NULL;
    }
    if (tb != Py_None && PyException_SetTraceback(exc, tb) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    return exc;
}

static PyObject *take_exception(void);
static void give_exception(PyObject *exc);

/* what a generator's frame does with a StopIteration raised in it (PEP 479) */
static void
stop_to_runtime_error(void)
{
    PyObject *stop = take_exception();
    PyErr_SetString(PyExc_RuntimeError, "generator raised StopIteration");
    PyObject *err = take_exception();
    PyException_SetCause(err, Py_NewRef(stop));
    PyException_SetContext(err, stop);
    give_exception(err);
}

static PyObject *core_close(Core *self, PyObject *Py_UNUSED(ignored));
static PyObject *core_throw_(Core *self, PyObject *const *args, Py_ssize_t nargs,
                             int *absorbed);

static PyObject *
core_throw(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    int absorbed;
    return core_throw_(self, args, nargs, &absorbed);
}

/* *absorbed: 1 if the outcome stood (StopIteration set), 0 otherwise */
static PyObject *
core_throw_(Core *self, PyObject *const *args, Py_ssize_t nargs, int *absorbed)
{
    *absorbed = 0;
    PyObject *exc = throw_exc(args, nargs);
    if (exc == NULL) {
        if (self->step == 1) { /* raised at the yield, as a generator's frame: withdrawn */
            PyObject *err = take_exception();
            PyObject *r = core_close(self, NULL);
            if (r == NULL) {
                Py_DECREF(err);
                return NULL;
            }
            Py_DECREF(r);
            give_exception(err);
        }
        return NULL;
    }
    if (self->step != 1) { /* not parked here: it surfaces as it came */
        reraise(exc);
        return NULL;
    }
    self->step = 0;
    PyObject *r = PyObject_CallFunctionObjArgs(g_thrown, (PyObject *)self, exc, NULL);
    if (r == NULL) {
        Py_DECREF(exc);
        return NULL;
    }
    int again = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (again != 0) {
        if (again < 0) {
            Py_DECREF(exc);
            return NULL;
        }
        reraise(exc);
        if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
            stop_to_runtime_error();
        }
        return NULL;
    }
    Py_DECREF(exc); /* the outcome stands (the cancellation is owed) */
    *absorbed = 1;
    core_finish(self);
    if (!PyErr_Occurred()) {
        PyErr_SetNone(PyExc_StopIteration);
    }
    return NULL;
}

static PyObject *
core_close(Core *self, PyObject *Py_UNUSED(ignored))
{
    if (self->step != 1) {
        Py_RETURN_NONE;
    }
    self->step = 0;
    PyObject *exc = PyObject_CallNoArgs(PyExc_GeneratorExit);
    if (exc == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(g_thrown, (PyObject *)self, exc, NULL);
    Py_DECREF(exc);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *core_complete(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames);

static PyMethodDef core_methods[] = {
    {"complete", (PyCFunction)(void (*)(void))core_complete, METH_FASTCALL | METH_KEYWORDS,
     "Give the waiter its outcome and queue its task's wake-up; True (False: its loop "
     "is closed, so it was withdrawn instead)."},
    {"send", (PyCFunction)core_send, METH_O, "Resume the park (a generator's send)."},
    {"throw", (PyCFunction)(void (*)(void))core_throw, METH_FASTCALL,
     "Raise an exception at the park (a generator's throw): csp._waiter._thrown."},
    {"close", (PyCFunction)core_close, METH_NOARGS,
     "Abandon the park (a generator's close): a pending waiter is withdrawn."},
    {NULL, NULL, 0, NULL},
};

#define FIELD(name, member, doc) \
    {name, T_OBJECT_EX, offsetof(Core, member), 0, doc}

static PyMemberDef core_members[] = {
    FIELD("_asyncio_future_blocking", afb, "True: what asyncio.Task looks for."),
    FIELD("base", base, "cancelling() count before the first request absorbed."),
    FIELD("index", index, "The select case that fired (-1 otherwise)."),
    FIELD("next", next, "WaitQ link."),
    FIELD("ok", ok, "False when completed by close."),
    FIELD("on_abort", on_abort, "Called once when withdrawn."),
    FIELD("prev", prev, "WaitQ link."),
    FIELD("q", q, "The WaitQ it is in, while PENDING."),
    FIELD("reason", reason, "What the task waits for."),
    FIELD("state", state, "PENDING, DONE or CANCELLED."),
    FIELD("value", value, "The outcome (or the value a parked sender offers)."),
    FIELD("waker", waker, "The runnable woken when the waiter leaves PENDING."),
    {NULL, 0, 0, 0, NULL},
};

static PyAsyncMethods core_async = {
    .am_await = (unaryfunc)core_await,
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "csp._speedups.WaiterCore",
    .tp_doc = PyDoc_STR("The compiled core of csp._waiter.Waiter: its fields, "
                        "constructor and park."),
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)core_init,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_as_async = &core_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)core_iternext,
    .tp_methods = core_methods,
    .tp_members = core_members,
};

/* ---- the run queue: csp._sched._SchedulerCore ------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *barrier;
    PyObject *draining;
    PyObject *loop;
    PyObject *runq;
    PyObject *scheduled;
    PyObject *tid;
} Sched;

static PyObject *g_barrier;      /* csp._sched._BARRIER */
static Py_ssize_t g_drain_budget; /* csp._sched.DRAIN_BUDGET */
static Shared *g_shared;         /* csp._threads.shared */
static PyObject *s_on, *s_append, *s_popleft, *s_call_soon, *s_drain, *s_run;

/* collections.deque (the run queue, a channel's buffer): its append and popleft called
 * through the type's own method descriptors, with no lookup by name on each call */
static PyObject *g_deque_type, *g_deque_append, *g_deque_popleft;

static PyObject *
deque_append(PyObject *d, PyObject *v)
{
    if (g_deque_type != NULL && (PyObject *)Py_TYPE(d) == g_deque_type) {
        PyObject *args[2] = {d, v};
        return PyObject_Vectorcall(g_deque_append, args, 2, NULL);
    }
    return PyObject_CallMethodOneArg(d, s_append, v);
}

static PyObject *
deque_popleft(PyObject *d)
{
    if (g_deque_type != NULL && (PyObject *)Py_TYPE(d) == g_deque_type) {
        return PyObject_Vectorcall(g_deque_popleft, &d, 1, NULL);
    }
    return PyObject_CallMethodNoArgs(d, s_popleft);
}
static PyObject *s__reschedule, *s__wake_from_thread, *s_call_exception_handler;
static PyObject *s_message, *s_exception;

static PyTypeObject GorType;

static int
shared_on(void)
{
    if (g_shared == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "csp._speedups.setup_sched() was not called");
        return -1;
    }
    return g_shared->on;
}

static PyObject *
sched_wake(Sched *self, PyObject *r)
{
    int on = shared_on();
    if (on < 0) {
        return NULL;
    }
    if (on) {
        unsigned long tid = self->tid != NULL ? PyLong_AsUnsignedLong(self->tid) : 0;
        if (tid == (unsigned long)-1 && PyErr_Occurred()) {
            return NULL;
        }
        if (tid != PyThread_get_thread_ident()) {
            return PyObject_CallMethodOneArg((PyObject *)self, s__wake_from_thread, r);
        }
    }
    if (self->runq == NULL || self->loop == NULL) {
        PyErr_SetString(PyExc_AttributeError, "scheduler not initialised");
        return NULL;
    }
    PyObject *res = deque_append(self->runq, r);
    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    if (self->scheduled != Py_True) {
        Py_XSETREF(self->scheduled, Py_NewRef(Py_True));
        PyObject *drain = PyObject_GetAttr((PyObject *)self, s_drain);
        if (drain == NULL) {
            return NULL;
        }
        res = PyObject_CallMethodOneArg(self->loop, s_call_soon, drain);
        Py_DECREF(drain);
        if (res == NULL) {
            return NULL;
        }
        Py_DECREF(res);
    }
    Py_RETURN_NONE;
}

static PyObject *gor_run(PyObject *self, PyObject *Py_UNUSED(ignored));

/* the exception being raised, normalized, with its traceback; clears it */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(v, tb);
        Py_DECREF(tb);
    }
    Py_XDECREF(t);
    return v;
#endif
}

static void
give_exception(PyObject *exc) /* steals exc */
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* after a call that returned NULL: a StopIteration (or none) becomes its value in *v
 * (0); any other exception stays raised (-1) */
static int
stop_value(PyObject **v)
{
    if (!PyErr_Occurred()) {
        *v = Py_NewRef(Py_None);
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
        return -1;
    }
    PyObject *exc = take_exception();
    *v = PyObject_GetAttrString(exc, "value");
    Py_DECREF(exc);
    return *v == NULL ? -1 : 0;
}

static PyObject *
sched_drain(Sched *self, PyObject *Py_UNUSED(ignored))
{
    if (self->runq == NULL || self->loop == NULL) {
        PyErr_SetString(PyExc_AttributeError, "scheduler not initialised");
        return NULL;
    }
    PyObject *runq = Py_NewRef(self->runq);
    PyObject *popleft = PyObject_GetAttr(runq, s_popleft);
    if (popleft == NULL) {
        Py_DECREF(runq);
        return NULL;
    }
    Py_ssize_t budget = g_drain_budget;
    Py_XSETREF(self->draining, Py_NewRef(Py_True));
    for (;;) {
        Py_ssize_t n = PyObject_Size(runq);
        if (n < 0) {
            goto error;
        }
        if (n == 0 || budget == 0) {
            break;
        }
        PyObject *r = PyObject_CallNoArgs(popleft);
        if (r == NULL) {
            goto error;
        }
        if (r == g_barrier) {
            Py_DECREF(r);
            Py_XSETREF(self->barrier, Py_NewRef(Py_False));
            break;
        }
        budget -= 1;
        PyObject *res = is_a(r, &GorType)
            ? gor_run(r, NULL) : PyObject_CallMethodNoArgs(r, s_run);
        if (res != NULL) {
            Py_DECREF(res);
            Py_DECREF(r);
            continue;
        }
        PyObject *exc = take_exception();
        if (PyErr_GivenExceptionMatches(exc, PyExc_SystemExit)
                || PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt)) {
            /* a Task's step re-raised them, as asyncio does: the loop stops, but what is
             * queued still runs if the loop runs again (clean-up) */
            Py_DECREF(r);
            Py_XSETREF(self->draining, Py_NewRef(Py_False));
            PyObject *rs = PyObject_CallMethodNoArgs((PyObject *)self, s__reschedule);
            if (rs == NULL) {
                Py_DECREF(exc);
                goto error;
            }
            Py_DECREF(rs);
            give_exception(exc);
            goto error;
        }
        /* a csp bug: do not strand the others */
        PyObject *msg = PyUnicode_FromFormat("Exception in csp wake-up of %R", r);
        Py_DECREF(r);
        PyObject *ctx = msg == NULL ? NULL : PyDict_New();
        if (ctx == NULL || PyDict_SetItem(ctx, s_message, msg) < 0
                || PyDict_SetItem(ctx, s_exception, exc) < 0) {
            Py_XDECREF(msg);
            Py_XDECREF(ctx);
            Py_DECREF(exc);
            goto error;
        }
        Py_DECREF(msg);
        Py_DECREF(exc);
        res = PyObject_CallMethodOneArg(self->loop, s_call_exception_handler, ctx);
        Py_DECREF(ctx);
        if (res == NULL) {
            goto error;
        }
        Py_DECREF(res);
    }
    Py_XSETREF(self->draining, Py_NewRef(Py_False));
    Py_ssize_t n = PyObject_Size(runq);
    if (n < 0) {
        goto error;
    }
    if (n > 0) {
        PyObject *first = PySequence_GetItem(runq, 0);
        if (first == NULL) {
            goto error;
        }
        Py_DECREF(first); /* (still held by the queue) */
        if (first == g_barrier) {
            /* the budget ran out right at the barrier: the loop runs its callbacks
             * before the next drain anyway */
            PyObject *b = PyObject_CallNoArgs(popleft);
            if (b == NULL) {
                goto error;
            }
            Py_DECREF(b);
            Py_XSETREF(self->barrier, Py_NewRef(Py_False));
        }
    }
    Py_DECREF(popleft);
    Py_DECREF(runq);
    return PyObject_CallMethodNoArgs((PyObject *)self, s__reschedule);
error:
    Py_DECREF(popleft);
    Py_DECREF(runq);
    return NULL;
}

static int
sched_traverse(Sched *self, visitproc visit, void *arg)
{
    Py_VISIT(self->barrier);
    Py_VISIT(self->draining);
    Py_VISIT(self->loop);
    Py_VISIT(self->runq);
    Py_VISIT(self->scheduled);
    Py_VISIT(self->tid);
    return 0;
}

static int
sched_clear(Sched *self)
{
    Py_CLEAR(self->barrier);
    Py_CLEAR(self->draining);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->runq);
    Py_CLEAR(self->scheduled);
    Py_CLEAR(self->tid);
    return 0;
}

static void
sched_dealloc(Sched *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    sched_clear(self);
    tp->tp_free((PyObject *)self);
}

#define SFIELD(name, doc) {#name, T_OBJECT_EX, offsetof(Sched, name), 0, doc}

static PyMemberDef sched_members[] = {
    SFIELD(barrier, "True iff _BARRIER is in runq."),
    SFIELD(draining, "True only while drain() runs."),
    SFIELD(loop, "The event loop."),
    SFIELD(runq, "The run queue (a deque of runnables)."),
    SFIELD(scheduled, "True iff a drain callback is queued on the loop."),
    SFIELD(tid, "The loop's thread."),
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef sched_methods[] = {
    {"wake", (PyCFunction)sched_wake, METH_O,
     "Queue r to run in this loop's next drain (from any thread)."},
    {"drain", (PyCFunction)sched_drain, METH_NOARGS,
     "The loop callback that runs queued wake-ups."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SchedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "csp._speedups.SchedulerCore",
    .tp_doc = PyDoc_STR("The compiled core of csp._sched.Scheduler: the run queue's "
                        "fields, wake and drain."),
    .tp_basicsize = sizeof(Sched),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)sched_dealloc,
    .tp_traverse = (traverseproc)sched_traverse,
    .tp_clear = (inquiry)sched_clear,
    .tp_methods = sched_methods,
    .tp_members = sched_members,
};

/* ---- the goroutine driver: csp._drive._GoroutineCore ---------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *coro;
    PyObject *ctx;
    PyObject *cur;
    PyObject *loop;
    PyObject *sched;
    PyObject *send_;
    PyObject *task;
    PyObject *via_task;
} Gor;

static PyObject *g_drive_globals; /* csp._drive's namespace: _current_tasks */
static PyObject *g_kinds[4];      /* _RESUME, _YIELD, _RETURN, _RAISE */
static PyObject *s__current_tasks, *s_Waiter, *s__to_task, *s__publish, *s_push_yield;
static PyObject *s__parked_with_cancel_pending;

enum { K_RESUME, K_YIELD, K_RETURN, K_RAISE };

static PyObject *
to_task(PyObject *self, int kind, PyObject *arg)
{
    return PyObject_CallMethodObjArgs(self, s__to_task, g_kinds[kind], arg, NULL);
}

static PyObject *
drive_global(PyObject *name)
{
    PyObject *v = PyDict_GetItemWithError(g_drive_globals, name);
    if (v == NULL && !PyErr_Occurred()) {
        PyErr_Format(PyExc_NameError, "csp._drive.%U is missing", name);
    }
    return v; /* borrowed */
}

static PyObject *
gor_run(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    Gor *self = (Gor *)op;
    if (g_drive_globals == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "csp._speedups.setup_drive() was not called");
        return NULL;
    }
    if (self->via_task == Py_True) {
        return to_task(op, K_RESUME, Py_None);
    }
    if (self->loop == NULL || self->ctx == NULL || self->coro == NULL
            || self->task == NULL || self->send_ == NULL || self->sched == NULL) {
        PyErr_SetString(PyExc_AttributeError, "goroutine not initialised");
        return NULL;
    }
    Py_XSETREF(self->cur, Py_NewRef(Py_None));
    PyObject *cur = drive_global(s__current_tasks);
    if (cur == NULL) {
        return NULL;
    }
    Py_INCREF(cur);
    PyObject *loop = Py_NewRef(self->loop);
    PyObject *ctx = Py_NewRef(self->ctx);
    PyObject *y = NULL;
    PySendResult st;
    if ((PyDict_CheckExact(cur) ? PyDict_SetItem(cur, loop, self->task)
                                : PyObject_SetItem(cur, loop, self->task)) < 0) {
        /* (current_task() must be right while it runs) */
        Py_DECREF(cur);
        Py_DECREF(loop);
        Py_DECREF(ctx);
        return NULL;
    }
    if (PyContext_Enter(ctx) < 0) {
        st = PYGEN_ERROR;
    }
    else {
        /* owned for the call: the coroutine may rebind g.coro / g.send_ */
        PyObject *coro = Py_NewRef(self->coro);
        PyObject *send = Py_NewRef(self->send_);
        if (PyCoro_CheckExact(coro) || PyGen_CheckExact(coro)) {
            st = PyIter_Send(coro, Py_None, &y);
        }
        else { /* another object with the coroutine protocol: its send(), as a Task */
            y = PyObject_CallOneArg(send, Py_None);
            st = PYGEN_NEXT;
            if (y == NULL) {
                st = stop_value(&y) == 0 ? PYGEN_RETURN : PYGEN_ERROR;
            }
        }
        Py_DECREF(send);
        Py_DECREF(coro);
        if (st == PYGEN_ERROR) {
            PyObject *exc = take_exception();
            (void)PyContext_Exit(ctx);
            give_exception(exc);
        }
        else if (PyContext_Exit(ctx) < 0) {
            Py_CLEAR(y);
            st = PYGEN_ERROR;
        }
    }
    Py_DECREF(ctx);
    PyObject *exc = st == PYGEN_ERROR ? take_exception() : NULL;
    int rc = PyDict_CheckExact(cur) ? PyDict_DelItem(cur, loop) : PyObject_DelItem(cur, loop);
    Py_DECREF(cur);
    Py_DECREF(loop);
    if (rc < 0) {
        Py_XDECREF(y);
        Py_XDECREF(exc);
        return NULL;
    }
    if (st == PYGEN_RETURN) {
        PyObject *res = to_task(op, K_RETURN, y);
        Py_DECREF(y);
        return res;
    }
    if (st == PYGEN_ERROR) {
        PyObject *res = to_task(op, K_RAISE, exc);
        Py_DECREF(exc);
        return res;
    }
    /* it yielded y */
    PyObject *res = NULL;
    if ((PyObject *)Py_TYPE(y) == g_waiter_cls) { /* parked in csp again */
        int on = shared_on();
        if (on < 0) {
            goto done;
        }
        if (on) {
            res = PyObject_CallMethodOneArg(op, s__publish, y);
            if (res == NULL) {
                goto done;
            }
            int published = PyObject_IsTrue(res);
            Py_CLEAR(res);
            if (published <= 0) {
                if (published == 0) {
                    res = Py_NewRef(Py_None); /* completed by another thread meanwhile */
                }
                goto done;
            }
        }
        else {
            if (is_a(y, &CoreType)) {
                Py_XSETREF(((Core *)y)->waker, Py_NewRef(op));
            }
            else if (PyObject_SetAttrString(y, "waker", op) < 0) {
                goto done;
            }
            Py_XSETREF(self->cur, Py_NewRef(y));
        }
        if (self->via_task == Py_True) {
            res = PyObject_CallMethodOneArg(op, s__parked_with_cancel_pending, y);
        }
        else {
            res = Py_NewRef(Py_None);
        }
    }
    else if (y == Py_None) { /* a bare yield (gosched, asyncio.sleep(0)) */
        if (self->via_task == Py_True) {
            res = to_task(op, K_RESUME, Py_None); /* the Task throws CancelledError in */
        }
        else {
            res = PyObject_CallMethodOneArg(self->sched, s_push_yield, op);
        }
    }
    else {
        res = to_task(op, K_YIELD, y); /* an asyncio Future, ...: the Task awaits it */
    }
done:
    Py_DECREF(y);
    return res;
}

static int
gor_traverse(Gor *self, visitproc visit, void *arg)
{
    Py_VISIT(self->coro);
    Py_VISIT(self->ctx);
    Py_VISIT(self->cur);
    Py_VISIT(self->loop);
    Py_VISIT(self->sched);
    Py_VISIT(self->send_);
    Py_VISIT(self->task);
    Py_VISIT(self->via_task);
    return 0;
}

static int
gor_clear(Gor *self)
{
    Py_CLEAR(self->coro);
    Py_CLEAR(self->ctx);
    Py_CLEAR(self->cur);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->sched);
    Py_CLEAR(self->send_);
    Py_CLEAR(self->task);
    Py_CLEAR(self->via_task);
    return 0;
}

static void
gor_dealloc(Gor *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    gor_clear(self);
    tp->tp_free((PyObject *)self);
}

#define GFIELD(name, doc) {#name, T_OBJECT_EX, offsetof(Gor, name), 0, doc}

static PyMemberDef gor_members[] = {
    GFIELD(coro, "The user's coroutine."),
    GFIELD(ctx, "The goroutine's context."),
    GFIELD(cur, "The csp waiter the coroutine is parked on, or None."),
    GFIELD(loop, "Its scheduler's loop."),
    GFIELD(sched, "Its scheduler."),
    GFIELD(send_, "coro.send, bound once."),
    GFIELD(task, "Its Task, until done."),
    GFIELD(via_task, "A cancellation only the Task's step can deliver is pending."),
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef gor_methods[] = {
    {"run", (PyCFunction)gor_run, METH_NOARGS,
     "Resume the coroutine from the run queue (the hottest path in csp)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "csp._speedups.GoroutineCore",
    .tp_doc = PyDoc_STR("The compiled core of csp._drive.Goroutine: its hot fields "
                        "and run()."),
    .tp_basicsize = sizeof(Gor),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)gor_dealloc,
    .tp_traverse = (traverseproc)gor_traverse,
    .tp_clear = (inquiry)gor_clear,
    .tp_methods = gor_methods,
    .tp_members = gor_members,
};

/* ---- completion: csp._waiter._WaiterCore.complete ---------------------------------- */

/* a borrowed-or-new attribute: *out is a new reference */
static int
complete_one(Core *self, PyObject *value, PyObject *ok)
{
    PyObject *r = self->waker;
    if (r != NULL && r != Py_None) {
        Py_INCREF(r);
        PyObject *sched = is_a(r, &GorType) && ((Gor *)r)->sched != NULL
            ? Py_NewRef(((Gor *)r)->sched) : PyObject_GetAttr(r, s_sched);
        if (sched == NULL) {
            Py_DECREF(r);
            return -1;
        }
        int is_sched = is_a(sched, &SchedType);
        int draining;
        if (is_sched) {
            draining = ((Sched *)sched)->draining == Py_True;
        }
        else {
            PyObject *d = PyObject_GetAttr(sched, s_draining);
            draining = d == NULL ? -1 : PyObject_IsTrue(d);
            Py_XDECREF(d);
        }
        if (draining < 0) {
            goto fail;
        }
        if (!draining) {
            /* (a loop whose drain runs now is open, as is the running loop) */
            PyObject *loop = is_sched && ((Sched *)sched)->loop != NULL
                ? Py_NewRef(((Sched *)sched)->loop) : PyObject_GetAttr(sched, s_loop);
            if (loop == NULL) {
                goto fail;
            }
            PyObject *running = PyObject_CallNoArgs(g_get_running_loop);
            if (running == NULL) {
                Py_DECREF(loop);
                goto fail;
            }
            Py_DECREF(running); /* (only compared) */
            int closed = 0;
            if (loop != running) {
                PyObject *c = PyObject_CallMethodNoArgs(loop, s_is_closed);
                closed = c == NULL ? -1 : PyObject_IsTrue(c);
                Py_XDECREF(c);
            }
            Py_DECREF(loop);
            if (closed < 0) {
                goto fail;
            }
            if (closed) {
                Py_DECREF(sched);
                Py_DECREF(r);
                PyObject *w = PyObject_CallMethodNoArgs((PyObject *)self, s_withdraw);
                if (w == NULL) {
                    return -1;
                }
                Py_DECREF(w);
                return 0;
            }
        }
        Py_XSETREF(self->state, Py_NewRef(g_done));
        Py_XSETREF(self->value, Py_NewRef(value));
        Py_XSETREF(self->ok, Py_NewRef(ok));
        PyObject *res = is_sched ? sched_wake((Sched *)sched, r)
                                 : PyObject_CallMethodOneArg(sched, s_wake, r);
        Py_DECREF(sched);
        Py_DECREF(r);
        if (res == NULL) {
            return -1;
        }
        Py_DECREF(res);
        return 1;
fail:
        Py_DECREF(sched);
        Py_DECREF(r);
        return -1;
    }
    Py_XSETREF(self->state, Py_NewRef(g_done));
    Py_XSETREF(self->value, Py_NewRef(value));
    Py_XSETREF(self->ok, Py_NewRef(ok));
    return 1;
}

static PyObject *
core_complete(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *value = NULL, *ok = Py_True;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs + nkw < 1 || nargs + nkw > 2 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "complete(value, ok=True)");
        return NULL;
    }
    if (nargs >= 1) {
        value = args[0];
    }
    if (nargs == 2) {
        ok = args[1];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(name, "ok") == 0 && nargs < 2) {
            ok = args[nargs + i];
        }
        else if (PyUnicode_CompareWithASCIIString(name, "value") == 0 && nargs < 1) {
            value = args[nargs + i];
        }
        else {
            PyErr_Format(PyExc_TypeError, "complete() got an unexpected keyword argument %R",
                         name);
            return NULL;
        }
    }
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "complete() missing argument 'value'");
        return NULL;
    }
    int rc = complete_one((Core *)self, value, ok);
    if (rc < 0) {
        return NULL;
    }
    return Py_NewRef(rc ? Py_True : Py_False);
}

/* ---- the wait queue: csp._waitq._WaitQCore ---------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *head;
    PyObject *tail;
} Q;


/* node fields: a Waiter's directly, any other node's (a select's) by attribute */
static inline PyObject *
node_get(PyObject *n, PyObject *name, size_t off) /* new reference */
{
    if ((PyObject *)Py_TYPE(n) == g_waiter_cls || is_a(n, &CoreType)) {
        PyObject *v = *(PyObject **)((char *)n + off);
        if (v == NULL) {
            PyErr_SetObject(PyExc_AttributeError, name);
            return NULL;
        }
        return Py_NewRef(v);
    }
    return PyObject_GetAttr(n, name);
}

static inline int
node_set(PyObject *n, PyObject *name, size_t off, PyObject *v)
{
    if ((PyObject *)Py_TYPE(n) == g_waiter_cls || is_a(n, &CoreType)) {
        Py_XSETREF(*(PyObject **)((char *)n + off), Py_NewRef(v));
        return 0;
    }
    return PyObject_SetAttr(n, name, v);
}

#define NGET(n, f) node_get((n), s_##f, offsetof(Core, f))
#define NSET(n, f, v) node_set((n), s_##f, offsetof(Core, f), (v))

/* n.complete(value[, ok]) -> 1 / 0, or -1 */
static int
node_complete(PyObject *n, PyObject *value)
{
    if ((PyObject *)Py_TYPE(n) == g_waiter_cls) {
        return complete_one((Core *)n, value, Py_True);
    }
    PyObject *r = PyObject_CallMethodOneArg(n, s_complete, value);
    if (r == NULL) {
        return -1;
    }
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

static PyObject *
q_push(Q *self, PyObject *n)
{
    PyObject *t = Py_NewRef(self->tail != NULL ? self->tail : Py_None);
    if (NSET(n, q, (PyObject *)self) < 0 || NSET(n, prev, t) < 0 || NSET(n, next, Py_None) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    if (t == Py_None) {
        Py_XSETREF(self->head, Py_NewRef(n));
    }
    else if (NSET(t, next, n) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    Py_DECREF(t);
    Py_XSETREF(self->tail, Py_NewRef(n));
    Py_RETURN_NONE;
}

/* unlink the head (not None); a new reference to it, or NULL */
static PyObject *
q_pop_head(Q *self)
{
    PyObject *n = Py_NewRef(self->head);
    PyObject *nxt = NGET(n, next);
    if (nxt == NULL) {
        Py_DECREF(n);
        return NULL;
    }
    Py_XSETREF(self->head, nxt); /* (steals nxt) */
    if (nxt == Py_None) {
        Py_XSETREF(self->tail, Py_NewRef(Py_None));
    }
    else if (NSET(nxt, prev, Py_None) < 0) {
        Py_DECREF(n);
        return NULL;
    }
    if (NSET(n, q, Py_None) < 0 || NSET(n, next, Py_None) < 0) {
        Py_DECREF(n);
        return NULL;
    }
    return n;
}

static int
q_empty(Q *self)
{
    return self->head == NULL || self->head == Py_None;
}

static PyObject *
q_pop(Q *self, PyObject *Py_UNUSED(ignored))
{
    if (q_empty(self)) {
        Py_RETURN_NONE;
    }
    return q_pop_head(self);
}

static PyObject *
q_give(Q *self, PyObject *value)
{
    while (!q_empty(self)) {
        PyObject *n = q_pop_head(self);
        if (n == NULL) {
            return NULL;
        }
        int rc = node_complete(n, value);
        Py_DECREF(n);
        if (rc < 0) {
            return NULL;
        }
        if (rc) {
            Py_RETURN_TRUE;
        }
    }
    Py_RETURN_FALSE;
}

static PyObject *
q_take(Q *self, PyObject *dflt)
{
    while (!q_empty(self)) {
        PyObject *n = q_pop_head(self);
        if (n == NULL) {
            return NULL;
        }
        PyObject *v = NGET(n, value); /* (read first: completing lets go of it) */
        if (v == NULL) {
            Py_DECREF(n);
            return NULL;
        }
        int rc = node_complete(n, Py_None);
        Py_DECREF(n);
        if (rc < 0) {
            Py_DECREF(v);
            return NULL;
        }
        if (rc) {
            return v;
        }
        Py_DECREF(v);
    }
    return Py_NewRef(dflt);
}

static PyObject *
q_unlink(Q *self, PyObject *n)
{
    PyObject *p = NGET(n, prev);
    PyObject *nxt = p == NULL ? NULL : NGET(n, next);
    if (nxt == NULL) {
        Py_XDECREF(p);
        return NULL;
    }
    int rc = 0;
    if (p == Py_None) {
        Py_XSETREF(self->head, Py_NewRef(nxt));
    }
    else {
        rc = NSET(p, next, nxt);
    }
    if (rc == 0) {
        if (nxt == Py_None) {
            Py_XSETREF(self->tail, Py_NewRef(p));
        }
        else {
            rc = NSET(nxt, prev, p);
        }
    }
    Py_DECREF(p);
    Py_DECREF(nxt);
    if (rc < 0 || NSET(n, q, Py_None) < 0 || NSET(n, prev, Py_None) < 0
            || NSET(n, next, Py_None) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
q_init(Q *self, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "WaitQ() takes no arguments");
        return -1;
    }
    Py_XSETREF(self->head, Py_NewRef(Py_None));
    Py_XSETREF(self->tail, Py_NewRef(Py_None));
    return 0;
}

static int
q_traverse(Q *self, visitproc visit, void *arg)
{
    Py_VISIT(self->head);
    Py_VISIT(self->tail);
    return 0;
}

static int
q_clear(Q *self)
{
    Py_CLEAR(self->head);
    Py_CLEAR(self->tail);
    return 0;
}

static void
q_dealloc(Q *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    q_clear(self);
    tp->tp_free((PyObject *)self);
}

static PyMemberDef q_members[] = {
    {"head", T_OBJECT_EX, offsetof(Q, head), 0, "The longest-waiting node, or None."},
    {"tail", T_OBJECT_EX, offsetof(Q, tail), 0, "The newest node, or None."},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef q_methods[] = {
    {"push", (PyCFunction)q_push, METH_O, "Append n at the tail."},
    {"pop", (PyCFunction)q_pop, METH_NOARGS, "Unlink and return the head, or None."},
    {"give", (PyCFunction)q_give, METH_O,
     "Complete the longest-waiting node that can still run with value: True if one "
     "took it."},
    {"take", (PyCFunction)q_take, METH_O,
     "Complete the longest-waiting sender that can still run; the value it offered, "
     "or default."},
    {"unlink", (PyCFunction)q_unlink, METH_O, "Take n out (it is linked here)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject QType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "csp._speedups.WaitQCore",
    .tp_doc = PyDoc_STR("The compiled core of csp._waitq.WaitQ: its links and its "
                        "hand-over methods."),
    .tp_basicsize = sizeof(Q),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)q_init,
    .tp_dealloc = (destructor)q_dealloc,
    .tp_traverse = (traverseproc)q_traverse,
    .tp_clear = (inquiry)q_clear,
    .tp_methods = q_methods,
    .tp_members = q_members,
};

static PyObject *
setup_waiter_class(PyObject *module, PyObject *cls)
{
    Py_XSETREF(g_waiter_cls, Py_NewRef(cls));
    Py_RETURN_NONE;
}

/* ---- the channel's non-blocking twins: csp._chan._ChanCore ------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *buf;
    PyObject *cap;
    PyObject *closed;
    PyObject *recvq;
    PyObject *sendq;
} Chan;

static PyObject *g_block, *g_closed_sentinel, *g_closed_error, *g_waitq_cls;
static PyObject *s_head;

static PyObject *
q_head(PyObject *q) /* new reference */
{
    if (is_a(q, &QType)) {
        PyObject *h = ((Q *)q)->head;
        return Py_NewRef(h != NULL ? h : Py_None);
    }
    return PyObject_GetAttr(q, s_head);
}

static PyObject *
q_take_any(PyObject *q, PyObject *dflt)
{
    if ((PyObject *)Py_TYPE(q) == g_waitq_cls) {
        return q_take((Q *)q, dflt);
    }
    return PyObject_CallMethodOneArg(q, s_take, dflt);
}

static PyObject *
q_give_any(PyObject *q, PyObject *value)
{
    if ((PyObject *)Py_TYPE(q) == g_waitq_cls) {
        return q_give((Q *)q, value);
    }
    return PyObject_CallMethodOneArg(q, s_give, value);
}

static int
chan_ready(Chan *self)
{
    if (self->buf == NULL || self->cap == NULL || self->closed == NULL
            || self->recvq == NULL || self->sendq == NULL) {
        PyErr_SetString(PyExc_AttributeError, "channel not initialised");
        return -1;
    }
    if (g_block == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "csp._speedups.setup_chan() was not called");
        return -1;
    }
    return 0;
}

/* the body of _try_recv, with the buffer and the send queue it started with (held by
 * the caller: the Python code some steps run may rebind the fields) */
static PyObject *
chan_try_recv_(Chan *self, PyObject *buf, PyObject *sendq)
{
    Py_ssize_t n = PyObject_Size(buf);
    if (n < 0) {
        return NULL;
    }
    if (n > 0) {
        PyObject *v = deque_popleft(buf);
        if (v == NULL) {
            return NULL;
        }
        PyObject *h = q_head(sendq);
        if (h == NULL) {
            Py_DECREF(v);
            return NULL;
        }
        Py_DECREF(h);
        if (h != Py_None) {
            /* the buffer was full and a sender is parked: its value takes the slot just
             * freed (global FIFO order), and its send completes */
            PyObject *sv = q_take_any(sendq, g_block);
            if (sv == NULL) {
                Py_DECREF(v);
                return NULL;
            }
            if (sv != g_block) {
                PyObject *r = deque_append(buf, sv);
                if (r == NULL) {
                    Py_DECREF(sv);
                    Py_DECREF(v);
                    return NULL;
                }
                Py_DECREF(r);
            }
            Py_DECREF(sv);
        }
        return v;
    }
    PyObject *h = q_head(sendq);
    if (h == NULL) {
        return NULL;
    }
    Py_DECREF(h);
    if (h != Py_None) { /* unbuffered: take a parked sender's value */
        PyObject *v = q_take_any(sendq, g_block);
        if (v == NULL || v != g_block) {
            return v;
        }
        Py_DECREF(v);
    }
    if (self->closed == NULL) { /* (re-read after take(), which runs Python code) */
        PyErr_SetString(PyExc_AttributeError, "_closed");
        return NULL;
    }
    int closed = PyObject_IsTrue(self->closed);
    if (closed < 0) {
        return NULL;
    }
    return Py_NewRef(closed ? g_closed_sentinel : g_block);
}

static PyObject *
chan_try_recv(Chan *self, PyObject *Py_UNUSED(ignored))
{
    if (chan_ready(self) < 0) {
        return NULL;
    }
    PyObject *buf = Py_NewRef(self->buf), *sendq = Py_NewRef(self->sendq);
    PyObject *r = chan_try_recv_(self, buf, sendq);
    Py_DECREF(buf);
    Py_DECREF(sendq);
    return r;
}

static PyObject *
chan_try_send(Chan *self, PyObject *value)
{
    if (chan_ready(self) < 0) {
        return NULL;
    }
    int closed = PyObject_IsTrue(self->closed);
    if (closed < 0) {
        return NULL;
    }
    if (closed) {
        PyErr_SetString(g_closed_error, "send on closed channel");
        return NULL;
    }
    PyObject *recvq = Py_NewRef(self->recvq);
    PyObject *h = q_head(recvq);
    if (h == NULL) {
        Py_DECREF(recvq);
        return NULL;
    }
    Py_DECREF(h);
    if (h != Py_None) {
        PyObject *r = q_give_any(recvq, value);
        Py_DECREF(recvq);
        if (r == NULL) {
            return NULL;
        }
        int given = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (given < 0) {
            return NULL;
        }
        if (given) {
            Py_RETURN_TRUE;
        }
    }
    else {
        Py_DECREF(recvq);
    }
    if (chan_ready(self) < 0) { /* (re-read after give(), which runs Python code) */
        return NULL;
    }
    Py_ssize_t n = PyObject_Size(self->buf);
    if (n < 0) {
        return NULL;
    }
    int room;
    Py_ssize_t cap = PyLong_CheckExact(self->cap) ? PyLong_AsSsize_t(self->cap) : -1;
    if (cap >= 0) {
        room = n < cap;
    }
    else { /* (not a plain int, or out of range: Python's comparison) */
        PyErr_Clear();
        PyObject *len = PyLong_FromSsize_t(n);
        if (len == NULL) {
            return NULL;
        }
        room = PyObject_RichCompareBool(len, self->cap, Py_LT);
        Py_DECREF(len);
        if (room < 0) {
            return NULL;
        }
    }
    if (room) {
        PyObject *r = deque_append(self->buf, value);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static int
chan_traverse(Chan *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buf);
    Py_VISIT(self->cap);
    Py_VISIT(self->closed);
    Py_VISIT(self->recvq);
    Py_VISIT(self->sendq);
    return 0;
}

static int
chan_clear(Chan *self)
{
    Py_CLEAR(self->buf);
    Py_CLEAR(self->cap);
    Py_CLEAR(self->closed);
    Py_CLEAR(self->recvq);
    Py_CLEAR(self->sendq);
    return 0;
}

static void
chan_dealloc(Chan *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    chan_clear(self);
    tp->tp_free((PyObject *)self);
}

/* ---- the blocking operations: csp._chan._ChanCore.recv / recv_ok / send / __anext__ --
 *
 * In pure Python each is a coroutine: a frame made, run and finished per operation. Here
 * `ch.recv()` returns a ChanOp, an awaitable that is its own coroutine (send, throw,
 * close; registered as a collections.abc.Coroutine, so asyncio.create_task and
 * csp.go take it). Nothing happens until it is first resumed, as with a coroutine.
 * Its first step is the pure twin's body: the budget guard, whose slow branch is the one
 * Python copy (_BaseChan._locked, driven here as a sub-coroutine); the non-blocking
 * twin; and when that would block, a Waiter pushed on the right queue, to which the
 * ChanOp then delegates (as `await w` does): yield it, forward throw and close.
 *
 * Invariants (tests/test_chan.py asserts them in both modes):
 *   - state NEW until the first resume; an op closed, or dropped, while NEW had no
 *     effect (dropped: RuntimeWarning "coroutine ... was never awaited");
 *   - sub is set exactly in WAITING (the Waiter parked on) and LOCKED (the coroutine
 *     of chan._locked); DONE holds no sub;
 *   - a ChanOp is awaited once: resuming it when DONE raises RuntimeError.
 */

enum { OP_RECV = 0, OP_RECV_OK = 1, OP_SEND = 2, OP_NEXT = 3, OP_SELECT = 4, OP_LOCK = 5 };
enum { OP_NEW = 0, OP_WAITING = 1, OP_LOCKED = 2, OP_DONE = 3 };

static const char *const op_names[] = {"recv", "recv_ok", "send", "__anext__", "select",
                                       "lock"};

typedef struct {
    PyObject_HEAD
    PyObject *chan;
    PyObject *value; /* OP_SEND: the value offered */
    PyObject *sub;   /* WAITING: the Waiter; LOCKED: chan._locked(kind, value) */
    int kind;
    int state;
    int flags;       /* OP_SELECT: 1 default, 2 priority */
    PyObject *ctype; /* the channel's class (its name, once chan is let go) */
    int running;     /* inside send/throw/close: no re-entry */
    int finalized;   /* its tp_finalize ran (the collector's flag then stays set: such
                      * an object is not reused) */
} Op;

static PyTypeObject OpType;
static PyTypeObject ChanType;
static PyTypeObject MutexType;

typedef struct {
    PyObject_HEAD
    PyObject *locked;
    PyObject *waiters;
} MutexObj;

static PyObject *g_ready, *g_pure_lock, *s_sync_mutex_lock;
static PyObject *g_unlocked, *g_owed, *g_try_recv_descr, *g_try_send_descr;
static PyObject *s__locked, *s__try_recv, *s__try_send, *s_push, *s_chan_receive;
static PyObject *s_chan_send;

/* Which channel classes use ChanCore's own _try_recv (bit 1) / _try_send (bit 2), so
 * that an operation calls them directly; a class overriding one (the timers' channels,
 * the overflow policies) gets its method called. Looked up once per class (a small
 * cache holding the classes). */
#define N_FLAGS 4
static PyObject *c_types[N_FLAGS];
static int c_flags[N_FLAGS], c_next;
static unsigned int c_tags[N_FLAGS]; /* the class's tp_version_tag when looked up */

static int
chan_flags(PyObject *tp)
{
    for (int i = 0; i < N_FLAGS; i++) {
        if (c_types[i] == tp && c_tags[i] != 0
                && c_tags[i] == ((PyTypeObject *)tp)->tp_version_tag) {
            return c_flags[i];
        }
    }
    int flags = 0;
    PyObject *d = PyObject_GetAttr(tp, s__try_recv);
    if (d == NULL) {
        return -1;
    }
    flags |= d == g_try_recv_descr ? 1 : 0;
    Py_DECREF(d);
    d = PyObject_GetAttr(tp, s__try_send);
    if (d == NULL) {
        return -1;
    }
    flags |= d == g_try_send_descr ? 2 : 0;
    Py_DECREF(d);
    for (int i = 0; i < N_FLAGS; i++) { /* (a stale entry of this class) */
        if (c_types[i] == tp) {
            c_tags[i] = ((PyTypeObject *)tp)->tp_version_tag;
            c_flags[i] = flags;
            return flags;
        }
    }
    Py_XSETREF(c_types[c_next], Py_NewRef(tp));
    c_tags[c_next] = ((PyTypeObject *)tp)->tp_version_tag;
    c_flags[c_next] = flags;
    c_next = (c_next + 1) % N_FLAGS;
    return flags;
}

/* finished operations kept for reuse (most live for one hand-off): no allocation, no
 * count towards the collector's next collection */
#define OP_FREE_MAX 32
static Op *op_free[OP_FREE_MAX];
static int op_nfree;

static PyObject *
op_new(PyObject *chan, int kind, PyObject *value)
{
    if (g_unlocked == NULL || g_budget == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "csp._speedups.setup_chan() was not called");
        return NULL;
    }
    Op *op;
    if (op_nfree > 0) {
        op = op_free[--op_nfree];
        (void)PyObject_Init((PyObject *)op, &OpType);
    }
    else {
        op = PyObject_GC_New(Op, &OpType);
        if (op == NULL) {
            return NULL;
        }
        op->finalized = 0;
    }
    op->chan = Py_NewRef(chan);
    op->value = Py_XNewRef(value);
    op->sub = NULL;
    op->kind = kind;
    op->state = OP_NEW;
    op->flags = 0;
    op->running = 0;
    op->ctype = Py_NewRef((PyObject *)Py_TYPE(chan));
    PyObject_GC_Track(op);
    return (PyObject *)op;
}

static PyObject *
chan_recv(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return op_new(self, OP_RECV, NULL);
}

static PyObject *
chan_recv_ok(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return op_new(self, OP_RECV_OK, NULL);
}

static PyObject *
chan_send(PyObject *self, PyObject *value)
{
    return op_new(self, OP_SEND, value);
}

static PyObject *
chan_anext(PyObject *self)
{
    return op_new(self, OP_NEXT, NULL);
}

/* the operation's outcome from a value received (ok) or the close (not ok): a new
 * reference, or NULL with StopAsyncIteration / ClosedChannelError set */
static PyObject *
op_outcome(Op *self, PyObject *v, int ok)
{
    switch (self->kind) {
    case OP_RECV:
        return Py_NewRef(ok ? v : Py_None);
    case OP_RECV_OK:
        return ok ? PyTuple_Pack(2, v, Py_True) : PyTuple_Pack(2, Py_None, Py_False);
    case OP_NEXT:
        if (!ok) {
            PyErr_SetNone(PyExc_StopAsyncIteration);
            return NULL;
        }
        return Py_NewRef(v);
    case OP_LOCK:
        Py_RETURN_NONE;
    default: /* OP_SEND */
        if (!ok) {
            PyErr_SetString(g_closed_error, "send on closed channel");
            return NULL;
        }
        Py_RETURN_NONE;
    }
}

/* a parked waiter finished: its outcome */
static PyObject *
op_waited(Op *self, Core *w)
{
    int ok = w->ok == NULL ? 1 : PyObject_IsTrue(w->ok);
    if (ok < 0) {
        return NULL;
    }
    return op_outcome(self, w->value != NULL ? w->value : Py_None, ok);
}

/* park: a fresh Waiter pushed on the queue; NULL, or the Waiter (new reference) */
static PyObject *
op_park(Op *self)
{
    PyObject *q, *reason, *value = Py_None;
    const char *field;
    if (self->kind == OP_LOCK) {
        q = ((MutexObj *)self->chan)->waiters;
        reason = s_sync_mutex_lock;
        field = "_waiters";
    }
    else if (self->kind == OP_SEND) {
        q = ((Chan *)self->chan)->sendq;
        reason = s_chan_send;
        value = self->value; /* a parked sender's waiter holds its value */
        field = "_sendq";
    }
    else {
        q = ((Chan *)self->chan)->recvq;
        reason = s_chan_receive;
        field = "_recvq";
    }
    if (q == NULL) { /* (re-read after the non-blocking twin, which runs Python code) */
        PyErr_SetString(PyExc_AttributeError, field);
        return NULL;
    }
    Core *w = waiter_alloc();
    if (w == NULL) {
        return NULL;
    }
    if (core_setup(w, reason, value) < 0) {
        Py_DECREF(w);
        return NULL;
    }
    PyObject *r;
    if ((PyObject *)Py_TYPE(q) == g_waitq_cls) {
        Py_INCREF(q);
        r = q_push((Q *)q, (PyObject *)w);
        Py_DECREF(q);
    }
    else {
        r = PyObject_CallMethodOneArg(q, s_push, (PyObject *)w);
    }
    if (r == NULL) {
        Py_DECREF(w);
        return NULL;
    }
    Py_DECREF(r);
    return (PyObject *)w;
}

static int op_park_and_yield(Op *self, PyObject **res);

/* the unlocked form: the non-blocking twin, else park and yield the Waiter.
 * 1: *res is what to yield; 0: *res is the outcome; -1: an exception is set */
static int
op_unlocked(Op *self, PyObject **res)
{
    PyObject *chan = self->chan; /* (its fields: checked by the twins and by op_park) */
    int flags = chan_flags((PyObject *)Py_TYPE(chan));
    if (flags < 0) {
        return -1;
    }
    if (self->kind == OP_SEND) {
        PyObject *r = flags & 2 ? chan_try_send((Chan *)chan, self->value)
                                : PyObject_CallMethodOneArg(chan, s__try_send, self->value);
        if (r == NULL) {
            return -1;
        }
        int done = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (done < 0) {
            return -1;
        }
        if (done) {
            *res = Py_NewRef(Py_None);
            return 0;
        }
    }
    else {
        PyObject *v = flags & 1 ? chan_try_recv((Chan *)chan, NULL)
                                : PyObject_CallMethodNoArgs(chan, s__try_recv);
        if (v == NULL) {
            return -1;
        }
        if (v != g_block) {
            *res = v == g_closed_sentinel ? op_outcome(self, Py_None, 0)
                                          : op_outcome(self, v, 1);
            Py_DECREF(v);
            return *res == NULL ? -1 : 0;
        }
        Py_DECREF(v);
    }
    return op_park_and_yield(self, res);
}

/* park (op_park), then yield the Waiter as `await w` would */
static int
op_park_and_yield(Op *self, PyObject **res)
{
    PyObject *w = op_park(self);
    if (w == NULL) {
        return -1;
    }
    self->sub = w;
    self->state = OP_WAITING;
    PyObject *y = core_iternext((Core *)w);
    if (y != NULL) {
        *res = y;
        return 1;
    }
    /* (a waiter finished before its first yield) */
    self->sub = NULL; /* (our reference is w's now: it outlives op_waited) */
    self->state = OP_DONE;
    *res = PyErr_Occurred() ? NULL : op_waited(self, (Core *)w);
    Py_DECREF(w);
    return *res == NULL ? -1 : 0;
}

/* chan._locked's coroutine returned r (stolen): its outcome, or on to the unlocked form */
static int
op_locked_returned(Op *self, PyObject *r, PyObject **res)
{
    Py_CLEAR(self->sub);
    if (r == g_unlocked && self->kind <= OP_NEXT) {
        Py_DECREF(r);
        int rc = op_unlocked(self, res);
        if (rc != 1) {
            self->state = OP_DONE;
        }
        return rc;
    }
    self->state = OP_DONE;
    *res = r;
    return 0;
}

/* ---- select: csp._select.select ----------------------------------------------------
 *
 * csp.select(*cases, default=False, priority=False) returns a ChanOp of kind OP_SELECT
 * (lazy, as a coroutine). Its first step is the pure select's, for the common cases:
 * every case a channel's own ch.recv / ch.recv_ok / (ch.send, v), at most SEL_MAX of
 * them, nothing owed, the budget not spent (so not shared mode): the budget guard, then
 * the poll, in the same random order from the same generator (random.random and the
 * permutation table of csp._select). If none is ready (and no default) it parks with the
 * one Python copy, csp._select._wait_parked(ops), driven as a sub-coroutine. Anything
 * else (a remote channel, bad cases, the guard's slow branch) runs the pure select,
 * driven the same way: one behaviour, one copy of each rule.
 */

#define SEL_MAX 16

static PyObject *g_pure_select, *g_wait_parked, *g_random, *g_perms, *g_order;
static PyObject *s_default, *s_priority;

/* the kind of case `f` (a channel's own bound operation) and its channel, or -1 */
static int
case_kind(PyObject *f, PyObject **ch)
{
    if (!PyCFunction_Check(f)) {
        return -1;
    }
    PyCFunction fn = PyCFunction_GET_FUNCTION(f);
    *ch = PyCFunction_GET_SELF(f);
    if (*ch == NULL || !is_a(*ch, &ChanType)) {
        return -1;
    }
    if (fn == (PyCFunction)chan_recv) {
        return OP_RECV;
    }
    if (fn == (PyCFunction)chan_recv_ok) {
        return OP_RECV_OK;
    }
    if (fn == (PyCFunction)chan_send) {
        return OP_SEND;
    }
    return -1;
}

/* the pure select (every rule and every error message), as the sub-coroutine */
static int
sel_pure(Op *self)
{
    PyObject *kw = PyDict_New();
    if (kw == NULL) {
        return -1;
    }
    if (PyDict_SetItem(kw, s_default, self->flags & 1 ? Py_True : Py_False) < 0
            || PyDict_SetItem(kw, s_priority, self->flags & 2 ? Py_True : Py_False) < 0) {
        Py_DECREF(kw);
        return -1;
    }
    PyObject *sub = PyObject_Call(g_pure_select, self->value, kw);
    Py_DECREF(kw);
    if (sub == NULL) {
        return -1;
    }
    self->sub = sub;
    self->state = OP_LOCKED;
    return 0;
}

/* (index, value) for a case that took effect; v is the value received or CLOSED */
static PyObject *
sel_result(Py_ssize_t i, int kind, PyObject *v)
{
    PyObject *out;
    if (kind == OP_SEND) {
        out = Py_NewRef(Py_None);
    }
    else if (kind == OP_RECV) {
        out = Py_NewRef(v == g_closed_sentinel ? Py_None : v);
    }
    else {
        out = v == g_closed_sentinel ? PyTuple_Pack(2, Py_None, Py_False)
                                     : PyTuple_Pack(2, v, Py_True);
        if (out == NULL) {
            return NULL;
        }
    }
    PyObject *idx = PyLong_FromSsize_t(i);
    if (idx == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    PyObject *r = PyTuple_Pack(2, idx, out);
    Py_DECREF(idx);
    Py_DECREF(out);
    return r;
}

/* the order to try n cases in (csp._select._order): a new reference to a sequence */
static PyObject *
sel_order(Py_ssize_t n)
{
    if (n >= 6) {
        PyObject *a = PyLong_FromSsize_t(n);
        if (a == NULL) {
            return NULL;
        }
        PyObject *r = PyObject_CallOneArg(g_order, a);
        Py_DECREF(a);
        return r;
    }
    PyObject *p = PyList_GetItem(g_perms, n); /* borrowed */
    if (p == NULL) {
        return NULL;
    }
    PyObject *x = PyObject_CallNoArgs(g_random);
    if (x == NULL) {
        return NULL;
    }
    double d = PyFloat_AsDouble(x);
    Py_DECREF(x);
    if (d == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t len = PyList_GET_SIZE(p);
    Py_ssize_t k = (Py_ssize_t)(d * (double)len);
    if (k < 0 || k >= len) {
        PyErr_SetString(PyExc_ValueError, "select: random() out of [0, 1)");
        return NULL;
    }
    return Py_NewRef(PyList_GET_ITEM(p, k));
}

/* the select's first step: 1 yield, 0 return, -1 error (op_step's convention) */
static int
sel_start(Op *self, PyObject **res)
{
    PyObject *cases = self->value;
    Py_ssize_t n = PyTuple_GET_SIZE(cases);
    PyObject *chans[SEL_MAX], *vals[SEL_MAX];
    int kinds[SEL_MAX];
    int simple = n <= SEL_MAX && PyDict_GET_SIZE(g_owed) == 0 && g_budget->left - 1 > 0;
    for (Py_ssize_t i = 0; simple && i < n; i++) {
        PyObject *c = PyTuple_GET_ITEM(cases, i);
        if (PyTuple_CheckExact(c)) {
            kinds[i] = PyTuple_GET_SIZE(c) == 2 ? case_kind(PyTuple_GET_ITEM(c, 0), &chans[i])
                                               : -1;
            vals[i] = PyTuple_GET_SIZE(c) == 2 ? PyTuple_GET_ITEM(c, 1) : NULL;
            simple = kinds[i] == OP_SEND;
        }
        else {
            kinds[i] = case_kind(c, &chans[i]);
            vals[i] = Py_None;
            simple = kinds[i] == OP_RECV || kinds[i] == OP_RECV_OK;
        }
        if (simple && chan_ready((Chan *)chans[i]) < 0) {
            return -1;
        }
    }
    if (!simple) {
        return sel_pure(self) < 0 ? -1 : 2;
    }
    g_budget->left -= 1;
    /* the poll: the first case that can go now, in random (or argument) order */
    PyObject *order = NULL;
    if (!(self->flags & 2)) {
        order = sel_order(n);
        if (order == NULL) {
            return -1;
        }
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t i = j;
        if (order != NULL) {
            i = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(order, j));
            if (i < 0 || i >= n) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_IndexError, "select: bad case order");
                }
                Py_DECREF(order);
                return -1;
            }
        }
        PyObject *ch = chans[i];
        int flags = chan_flags((PyObject *)Py_TYPE(ch));
        if (flags < 0) {
            Py_XDECREF(order);
            return -1;
        }
        if (kinds[i] == OP_SEND) {
            PyObject *r = flags & 2 ? chan_try_send((Chan *)ch, vals[i])
                                    : PyObject_CallMethodOneArg(ch, s__try_send, vals[i]);
            int done = r == NULL ? -1 : PyObject_IsTrue(r);
            Py_XDECREF(r);
            if (done < 0) {
                Py_XDECREF(order);
                return -1;
            }
            if (done) {
                Py_XDECREF(order);
                *res = sel_result(i, OP_SEND, Py_None);
                return *res == NULL ? -1 : 0;
            }
            continue;
        }
        PyObject *v = flags & 1 ? chan_try_recv((Chan *)ch, NULL)
                                : PyObject_CallMethodNoArgs(ch, s__try_recv);
        if (v == NULL) {
            Py_XDECREF(order);
            return -1;
        }
        if (v != g_block) {
            Py_XDECREF(order);
            *res = sel_result(i, kinds[i], v);
            Py_DECREF(v);
            return *res == NULL ? -1 : 0;
        }
        Py_DECREF(v);
    }
    Py_XDECREF(order);
    if (self->flags & 1) { /* default: none ready */
        *res = Py_BuildValue("(iO)", -1, Py_None);
        return *res == NULL ? -1 : 0;
    }
    /* park: the ops as the pure select has them, [(kind, channel, value)] */
    PyObject *ops = PyList_New(n);
    if (ops == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(iOO)", kinds[i], chans[i],
                                    kinds[i] == OP_SEND ? vals[i] : Py_None);
        if (t == NULL) {
            Py_DECREF(ops);
            return -1;
        }
        PyList_SET_ITEM(ops, i, t);
    }
    PyObject *sub = PyObject_CallOneArg(g_wait_parked, ops);
    Py_DECREF(ops);
    if (sub == NULL) {
        return -1;
    }
    self->sub = sub;
    self->state = OP_LOCKED;
    return 2;
}

static PyObject *
csp_select(PyObject *module, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    if (g_pure_select == NULL || g_unlocked == NULL || g_budget == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "csp._speedups.setup_select() was not called");
        return NULL;
    }
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    int flags = 0;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k), *v = args[nargs + k];
        int bit = PyUnicode_Compare(name, s_default) == 0 ? 1
                  : PyUnicode_Compare(name, s_priority) == 0 ? 2 : 0;
        if (bit == 0 || (v != Py_True && v != Py_False)) {
            /* (an unknown keyword, a non-bool flag: the pure select says what) */
            return PyObject_Vectorcall(g_pure_select, args, nargsf, kwnames);
        }
        if (v == Py_True) {
            flags |= bit;
        }
    }
    PyObject *cases = PyTuple_New(nargs);
    if (cases == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(cases, i, Py_NewRef(args[i]));
    }
    PyObject *op = op_new(Py_None, OP_SELECT, cases);
    Py_DECREF(cases);
    if (op != NULL) {
        ((Op *)op)->flags = flags;
    }
    return op;
}

static PyObject *
setup_select(PyObject *module, PyObject *args)
{
    PyObject *pure, *wait_parked, *random, *perms, *order;
    if (!PyArg_ParseTuple(args, "OOOO!O:setup_select", &pure, &wait_parked, &random,
                          &PyList_Type, &perms, &order)) {
        return NULL;
    }
    Py_XSETREF(g_pure_select, Py_NewRef(pure));
    Py_XSETREF(g_wait_parked, Py_NewRef(wait_parked));
    Py_XSETREF(g_random, Py_NewRef(random));
    Py_XSETREF(g_perms, Py_NewRef(perms));
    Py_XSETREF(g_order, Py_NewRef(order));
    Py_RETURN_NONE;
}

/* ---- the mutex: csp._sync._MutexCore -----------------------------------------------
 *
 * lock() returns a ChanOp of kind OP_LOCK: the guard (its slow branch runs the pure
 * lock, csp._sync._PureMutexCore.lock, as the sub-coroutine), then try_lock, else a
 * Waiter on _waiters. try_lock, unlock and the `async with` methods are C calls;
 * __aenter__ / __aexit__ return READY (a finished Future) when nothing waits, as the
 * pure ones do.
 */

static int
mutex_ready(MutexObj *self)
{
    if (self->locked == NULL || self->waiters == NULL) {
        PyErr_SetString(PyExc_AttributeError, "mutex not initialised");
        return -1;
    }
    if (g_ready == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "csp._speedups.setup_sync() was not called");
        return -1;
    }
    return 0;
}

/* 1 locked now, 0 held by another, -1 error */
static int
mutex_try(MutexObj *self)
{
    if (mutex_ready(self) < 0) {
        return -1;
    }
    int held = PyObject_IsTrue(self->locked);
    if (held != 0) {
        return held < 0 ? -1 : 0;
    }
    Py_XSETREF(self->locked, Py_NewRef(Py_True));
    return 1;
}

static int
lock_start(Op *self, PyObject **res)
{
    if (g_budget->left - 1 <= 0 || PyDict_GET_SIZE(g_owed) > 0) {
        /* the guard's slow branch: the pure lock() (it counts the budget itself) */
        PyObject *sub = PyObject_CallOneArg(g_pure_lock, self->chan);
        if (sub == NULL) {
            return -1;
        }
        self->sub = sub;
        self->state = OP_LOCKED;
        return 2;
    }
    g_budget->left -= 1;
    int got = mutex_try((MutexObj *)self->chan);
    if (got < 0) {
        return -1;
    }
    if (got) {
        *res = Py_NewRef(Py_None);
        return 0;
    }
    int rc = op_park_and_yield(self, res);
    if (rc != 1) {
        self->state = OP_DONE;
    }
    return rc;
}

static PyObject *
mutex_lock(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return op_new(self, OP_LOCK, NULL);
}

static PyObject *
mutex_try_lock(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    int got = mutex_try((MutexObj *)self);
    if (got < 0) {
        return NULL;
    }
    return Py_NewRef(got ? Py_True : Py_False);
}

static PyObject *
mutex_unlock(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    MutexObj *self = (MutexObj *)op;
    if (mutex_ready(self) < 0) {
        return NULL;
    }
    int held = PyObject_IsTrue(self->locked);
    if (held <= 0) {
        if (held == 0) {
            PyErr_SetString(PyExc_RuntimeError, "sync: unlock of unlocked mutex");
        }
        return NULL;
    }
    PyObject *waiters = Py_NewRef(self->waiters);
    PyObject *r = q_give_any(waiters, Py_None);
    Py_DECREF(waiters);
    if (r == NULL) {
        return NULL;
    }
    int given = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (given < 0) {
        return NULL;
    }
    if (!given) { /* (else still locked: now theirs) */
        Py_XSETREF(self->locked, Py_NewRef(Py_False));
    }
    Py_RETURN_NONE;
}

static PyObject *
mutex_aenter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (g_budget == NULL || g_owed == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "csp._speedups.setup() was not called");
        return NULL;
    }
    if (--g_budget->left > 0 && PyDict_GET_SIZE(g_owed) == 0) {
        int got = mutex_try((MutexObj *)self);
        if (got < 0) {
            return NULL;
        }
        if (got) {
            return Py_NewRef(g_ready);
        }
    }
    return op_new(self, OP_LOCK, NULL);
}

static PyObject *
mutex_aexit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *r = mutex_unlock(self, NULL);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    return Py_NewRef(g_ready);
}

static int
mutex_traverse(MutexObj *self, visitproc visit, void *arg)
{
    Py_VISIT(self->locked);
    Py_VISIT(self->waiters);
    return 0;
}

static int
mutex_clear(MutexObj *self)
{
    Py_CLEAR(self->locked);
    Py_CLEAR(self->waiters);
    return 0;
}

static void
mutex_dealloc(MutexObj *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    mutex_clear(self);
    tp->tp_free((PyObject *)self);
}

static PyMemberDef mutex_members[] = {
    {"_locked", T_OBJECT_EX, offsetof(MutexObj, locked), 0, "Held?"},
    {"_waiters", T_OBJECT_EX, offsetof(MutexObj, waiters), 0, "The tasks waiting (FIFO)."},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef mutex_methods[] = {
    {"lock", (PyCFunction)mutex_lock, METH_NOARGS,
     "lock()\n--\n\n"
     "Lock the mutex, waiting (in FIFO order) while another task holds it."},
    {"try_lock", (PyCFunction)mutex_try_lock, METH_NOARGS,
     "try_lock()\n--\n\n"
     "Lock the mutex if it is free now and return True; else return False.\n\n"
     "Go: ``TryLock``. Never waits and never yields."},
    {"unlock", (PyCFunction)mutex_unlock, METH_NOARGS,
     "unlock()\n--\n\n"
     "Unlock the mutex, handing it to the longest waiter if there is one.\n\n"
     "Raises ``RuntimeError(\"sync: unlock of unlocked mutex\")`` if it is not locked."},
    {"__aenter__", (PyCFunction)mutex_aenter, METH_NOARGS, NULL},
    {"__aexit__", (PyCFunction)(void (*)(void))mutex_aexit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MutexType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "csp._speedups.MutexCore",
    .tp_doc = PyDoc_STR("The compiled core of csp._sync.Mutex: its fields and operations."),
    .tp_basicsize = sizeof(MutexObj),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)mutex_dealloc,
    .tp_traverse = (traverseproc)mutex_traverse,
    .tp_clear = (inquiry)mutex_clear,
    .tp_methods = mutex_methods,
    .tp_members = mutex_members,
};

static PyObject *
setup_sync(PyObject *module, PyObject *args)
{
    PyObject *ready, *pure_lock;
    if (!PyArg_ParseTuple(args, "OO:setup_sync", &ready, &pure_lock)) {
        return NULL;
    }
    Py_XSETREF(g_ready, Py_NewRef(ready));
    Py_XSETREF(g_pure_lock, Py_NewRef(pure_lock));
    Py_RETURN_NONE;
}

/* resume the operation with `arg` (what a coroutine's send gets): 1 yield, 0 return,
 * -1 error (the PySendResult convention, with *res as PyIter_Send gives it) */
static int
op_step_(Op *self, PyObject *arg, PyObject **res)
{
    *res = NULL;
    switch (self->state) {
    case OP_NEW: {
        if (arg != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started coroutine");
            return -1;
        }
        self->state = OP_DONE; /* (until it parks: no re-entry) */
        if (self->kind == OP_SELECT) {
            int rc = sel_start(self, res);
            if (rc == 2) {
                goto locked;
            }
            return rc;
        }
        if (self->kind == OP_LOCK) {
            int rc = lock_start(self, res);
            if (rc == 2) {
                goto locked;
            }
            return rc;
        }
        /* the budget guard: budget.left -= 1; slow branch if spent or a cancel owed */
        if (--g_budget->left <= 0 || PyDict_GET_SIZE(g_owed) > 0) {
            PyObject *kind = PyLong_FromLong(self->kind);
            if (kind == NULL) {
                return -1;
            }
            PyObject *sub = PyObject_CallMethodObjArgs(
                self->chan, s__locked, kind, self->value != NULL ? self->value : Py_None,
                NULL);
            Py_DECREF(kind);
            if (sub == NULL) {
                return -1;
            }
            self->sub = sub;
            self->state = OP_LOCKED;
            goto locked;
        }
        int rc = op_unlocked(self, res);
        if (rc != 1) {
            self->state = OP_DONE;
        }
        return rc;
    }
    case OP_WAITING: {
        Core *w = (Core *)Py_NewRef(self->sub); /* (held: the resume may run Python) */
        PyObject *y = core_iternext(w);
        if (y != NULL) {
            Py_DECREF(w);
            *res = y;
            return 1;
        }
        Py_CLEAR(self->sub);
        self->state = OP_DONE;
        if (!PyErr_Occurred()) {
            *res = op_waited(self, w);
        }
        Py_DECREF(w);
        return *res == NULL ? -1 : 0;
    }
    case OP_LOCKED:
    locked: {
        PyObject *r;
        PyObject *sub = Py_NewRef(self->sub); /* (held while it runs) */
        PySendResult st = PyIter_Send(sub, arg, &r);
        Py_DECREF(sub);
        if (st == PYGEN_NEXT) {
            *res = r;
            return 1;
        }
        if (st == PYGEN_RETURN) {
            return op_locked_returned(self, r, res);
        }
        Py_CLEAR(self->sub);
        self->state = OP_DONE;
        return -1;
    }
    default:
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
        return -1;
    }
}

/* a finished operation lets go of its channel and its value, as a finished
 * coroutine's frame does */
static void
op_release(Op *self)
{
    Py_CLEAR(self->chan);
    Py_CLEAR(self->value);
}

static int
op_busy(Op *self)
{
    if (self->running) {
        PyErr_SetString(PyExc_ValueError, "coroutine already executing");
        return 1;
    }
    return 0;
}

static int
op_step(Op *self, PyObject *arg, PyObject **res)
{
    if (op_busy(self)) {
        *res = NULL;
        return -1;
    }
    self->running = 1;
    int rc = op_step_(self, arg, res);
    self->running = 0;
    if (self->state == OP_DONE) {
        op_release(self);
    }
    return rc;
}

/* op_step's return as a generator's: NULL with StopIteration(value) for a return */
static PyObject *
op_as_next(int rc, PyObject *res, int need_stop)
{
    if (rc == 1) {
        return res;
    }
    if (rc == 0) {
        if (res == Py_None) {
            Py_DECREF(res);
            if (need_stop) {
                PyErr_SetNone(PyExc_StopIteration);
            }
            return NULL;
        }
        /* (made explicitly: PyErr_SetObject would unpack a tuple as arguments) */
        PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, res);
        Py_DECREF(res);
        if (stop != NULL) {
            PyErr_SetObject(PyExc_StopIteration, stop);
            Py_DECREF(stop);
        }
    }
    return NULL;
}

static PySendResult
op_am_send(Op *self, PyObject *arg, PyObject **res)
{
    int rc = op_step(self, arg, res);
    return rc == 1 ? PYGEN_NEXT : rc == 0 ? PYGEN_RETURN : PYGEN_ERROR;
}

static PyObject *
op_iternext(Op *self)
{
    PyObject *res;
    int rc = op_step(self, Py_None, &res);
    return op_as_next(rc, res, 0);
}

static PyObject *
op_send(Op *self, PyObject *arg)
{
    PyObject *res;
    int rc = op_step(self, arg, &res);
    return op_as_next(rc, res, 1);
}

static PyObject *
op_throw_(Op *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *res = NULL;
    int rc;
    if (self->state == OP_WAITING) {
        Core *w = (Core *)Py_NewRef(self->sub);
        int absorbed;
        PyObject *y = core_throw_(w, args, nargs, &absorbed);
        if (y != NULL) { /* (not from a waiter: it never yields again) */
            Py_DECREF(w);
            return y;
        }
        Py_CLEAR(self->sub);
        self->state = OP_DONE;
        if (absorbed) {
            /* the outcome stood (the cancellation is owed) */
            PyErr_Clear();
            res = op_waited(self, w);
            rc = res == NULL ? -1 : 0;
        }
        else {
            rc = -1;
        }
        Py_DECREF(w);
    }
    else if (self->state == OP_LOCKED) {
        PyObject *meth = PyObject_GetAttrString(self->sub, "throw");
        if (meth == NULL) {
            return NULL;
        }
        PyObject *y = PyObject_Vectorcall(meth, args, nargs, NULL);
        Py_DECREF(meth);
        if (y != NULL) {
            return y;
        }
        if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
            PyObject *r = NULL;
            if (stop_value(&r) < 0) {
                Py_CLEAR(self->sub);
                self->state = OP_DONE;
                return NULL;
            }
            rc = op_locked_returned(self, r, &res);
        }
        else {
            Py_CLEAR(self->sub);
            self->state = OP_DONE;
            rc = -1;
        }
    }
    else {
        /* not started (or finished): the exception surfaces as it came, and an op
         * not started never will be (a coroutine's throw) */
        self->state = OP_DONE;
        PyObject *exc = throw_exc(args, nargs);
        if (exc != NULL) {
            reraise(exc);
        }
        return NULL;
    }
    return op_as_next(rc, res, 1);
}

static PyObject *
op_throw(Op *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (op_busy(self)) {
        return NULL;
    }
    self->running = 1;
    PyObject *r = op_throw_(self, args, nargs);
    self->running = 0;
    if (self->state == OP_DONE) {
        op_release(self);
    }
    return r;
}

static PyObject *
op_close(Op *self, PyObject *Py_UNUSED(ignored))
{
    if (op_busy(self)) {
        return NULL;
    }
    int state = self->state;
    PyObject *sub = self->sub;
    self->sub = NULL;
    self->state = OP_DONE;
    PyObject *r = NULL;
    if (state == OP_WAITING) {
        r = core_close((Core *)sub, NULL);
    }
    else if (state == OP_LOCKED) {
        r = PyObject_CallMethod(sub, "close", NULL);
    }
    else {
        r = Py_NewRef(Py_None);
    }
    Py_XDECREF(sub);
    op_release(self);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *
op_qualname(Op *self, void *Py_UNUSED(closure))
{
    if (self->kind == OP_SELECT) {
        return PyUnicode_FromString("select");
    }
    return PyUnicode_FromFormat("%s.%s", ((PyTypeObject *)self->ctype)->tp_name,
                                op_names[self->kind]);
}

static PyObject *
op_name(Op *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(op_names[self->kind]);
}

static PyObject *
op_get_chan(Op *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->chan != NULL ? self->chan : Py_None);
}

static PyObject *
op_get_await(Op *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->sub != NULL ? self->sub : Py_None);
}

static PyObject *
op_get_none(Op *self, void *Py_UNUSED(closure))
{
    Py_RETURN_NONE;
}

static PyObject *
op_get_running(Op *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->running ? Py_True : Py_False);
}

static PyObject *
op_get_suspended(Op *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->state == OP_WAITING || self->state == OP_LOCKED ? Py_True
                                                                           : Py_False);
}

static PyObject *
op_get_unstarted(Op *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->state == OP_NEW ? Py_True : Py_False);
}

static PyObject *
op_repr(Op *self)
{
    static const char *const states[] = {"new", "parked", "locked", "done"};
    PyObject *name = op_qualname(self, NULL);
    if (name == NULL) {
        return NULL;
    }
    PyObject *r = self->state == OP_WAITING
        ? PyUnicode_FromFormat("<csp %U() %s on %R>", name, states[self->state], self->sub)
        : PyUnicode_FromFormat("<csp %U() %s>", name, states[self->state]);
    Py_DECREF(name);
    return r;
}

static void
op_finalize(Op *self)
{
    self->finalized = 1;
    if (self->ctype == NULL) {
        return; /* (cleared) */
    }
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    if (self->state == OP_NEW) {
        PyObject *q = op_qualname(self, NULL);
        if (q == NULL
                || PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                                    "coroutine '%U' was never awaited", q) < 0) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
        Py_XDECREF(q);
        self->state = OP_DONE;
    }
    else if (self->sub != NULL) { /* dropped while parked: withdrawn (a coroutine's close) */
        PyObject *r = op_close(self, NULL);
        if (r == NULL) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
        Py_XDECREF(r);
    }
    PyErr_Restore(et, ev, etb);
}

static int
op_traverse(Op *self, visitproc visit, void *arg)
{
    Py_VISIT(self->chan);
    Py_VISIT(self->value);
    Py_VISIT(self->sub);
    Py_VISIT(self->ctype);
    return 0;
}

static int
op_clear(Op *self)
{
    Py_CLEAR(self->chan);
    Py_CLEAR(self->value);
    Py_CLEAR(self->sub);
    Py_CLEAR(self->ctype);
    return 0;
}

static void
op_dealloc(Op *self)
{
    /* (a finished operation has nothing to finalize: most of them) */
    if (self->state != OP_DONE && PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    op_clear(self);
    if (op_nfree < OP_FREE_MAX && !self->finalized) {
        op_free[op_nfree++] = self;
        return;
    }
    PyObject_GC_Del(self);
}

static PyObject *
op_await(PyObject *self)
{
    int st = ((Op *)self)->state;
    if (st == OP_WAITING || st == OP_LOCKED) {
        PyErr_SetString(PyExc_RuntimeError, "coroutine is being awaited already");
        return NULL;
    }
    return Py_NewRef(self);
}

static PyMethodDef op_methods[] = {
    {"send", (PyCFunction)op_send, METH_O, "Resume the operation (a coroutine's send)."},
    {"throw", (PyCFunction)(void (*)(void))op_throw, METH_FASTCALL,
     "Raise an exception where the operation waits (a coroutine's throw)."},
    {"close", (PyCFunction)op_close, METH_NOARGS,
     "Abandon the operation (a coroutine's close): a parked one is withdrawn."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef op_getset[] = {
    {"__qualname__", (getter)op_qualname, NULL, "Chan.recv and so on.", NULL},
    {"__name__", (getter)op_name, NULL, "recv, recv_ok, send or __anext__.", NULL},
    {"chan", (getter)op_get_chan, NULL, "The channel operated on.", NULL},
    {"cr_await", (getter)op_get_await, NULL, "The Waiter parked on, or None.", NULL},
    {"cr_frame", (getter)op_get_none, NULL, "None: no Python frame.", NULL},
    {"cr_code", (getter)op_get_none, NULL, "None: no Python code.", NULL},
    {"cr_running", (getter)op_get_running, NULL, "False.", NULL},
    {"_unstarted", (getter)op_get_unstarted, NULL, "Not resumed yet (nor closed).", NULL},
    {"cr_suspended", (getter)op_get_suspended, NULL, "Suspended (parked).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyAsyncMethods op_async = {
    .am_await = op_await,
    .am_send = (sendfunc)op_am_send,
};

static PyTypeObject OpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "csp._speedups.ChanOp",
    .tp_doc = PyDoc_STR("A channel operation under way (ch.recv(), ch.send(v), ...): "
                        "an awaitable that is its own coroutine."),
    .tp_basicsize = sizeof(Op),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)op_dealloc,
    .tp_finalize = (destructor)op_finalize,
    .tp_traverse = (traverseproc)op_traverse,
    .tp_clear = (inquiry)op_clear,
    .tp_repr = (reprfunc)op_repr,
    .tp_as_async = &op_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)op_iternext,
    .tp_methods = op_methods,
    .tp_getset = op_getset,
};

static PyMemberDef chan_members[] = {
    {"_buf", T_OBJECT_EX, offsetof(Chan, buf), 0, "The buffered values (a deque)."},
    {"_cap", T_OBJECT_EX, offsetof(Chan, cap), 0, "The capacity."},
    {"_closed", T_OBJECT_EX, offsetof(Chan, closed), 0, "Closed?"},
    {"_recvq", T_OBJECT_EX, offsetof(Chan, recvq), 0, "Parked receivers."},
    {"_sendq", T_OBJECT_EX, offsetof(Chan, sendq), 0, "Parked senders."},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef chan_methods[] = {
    {"_try_recv", (PyCFunction)chan_try_recv, METH_NOARGS,
     "Receive now if possible: the value, CLOSED (closed and drained), or BLOCK."},
    {"_try_send", (PyCFunction)chan_try_send, METH_O,
     "Send now if possible: True if done, False if it would block."},
    {"recv", (PyCFunction)chan_recv, METH_NOARGS,
     "recv()\n--\n\n"
     "Receive a value (Go: ``v := <-ch``).\n\n"
     "Blocks until a value is available. Once the channel is closed and drained it\n"
     "returns ``None`` at once. If cancelled, no value was taken."},
    {"recv_ok", (PyCFunction)chan_recv_ok, METH_NOARGS,
     "recv_ok()\n--\n\n"
     "Receive a value and whether it came from a send (Go: ``v, ok := <-ch``).\n\n"
     "``ok`` is False only when the channel is closed and drained; the value is then\n"
     "``None``. If cancelled, no value was taken."},
    {"send", (PyCFunction)chan_send, METH_O,
     "send(value)\n--\n\n"
     "Send ``value`` (Go: ``ch <- v``).\n\n"
     "On an unbuffered channel this returns once a receiver has taken the value; on\n"
     "a buffered one, once the value is in the buffer. Raises\n"
     ":class:`ClosedChannelError` (\"send on closed channel\") if the channel is, or\n"
     "becomes while waiting, closed. If cancelled, the value was not sent."},
    {NULL, NULL, 0, NULL},
};

static PyAsyncMethods chan_async = {
    .am_anext = chan_anext,
};

static PyTypeObject ChanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "csp._speedups.ChanCore",
    .tp_doc = PyDoc_STR("The compiled core of csp._chan._BaseChan: its fields and its "
                        "non-blocking twins."),
    .tp_basicsize = sizeof(Chan),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)chan_dealloc,
    .tp_traverse = (traverseproc)chan_traverse,
    .tp_clear = (inquiry)chan_clear,
    .tp_as_async = &chan_async,
    .tp_methods = chan_methods,
    .tp_members = chan_members,
};

static PyObject *
setup_chan(PyObject *module, PyObject *args)
{
    PyObject *block, *closed, *unlocked, *error, *waitq, *owed, *deque;
    if (!PyArg_ParseTuple(args, "OOOOOO!O!:setup_chan", &block, &closed, &unlocked, &error,
                          &waitq, &PyDict_Type, &owed, &PyType_Type, &deque)) {
        return NULL;
    }
    PyObject *app = PyObject_GetAttr(deque, s_append);
    PyObject *pop = app == NULL ? NULL : PyObject_GetAttr(deque, s_popleft);
    if (pop == NULL) {
        Py_XDECREF(app);
        return NULL;
    }
    Py_XSETREF(g_deque_type, Py_NewRef(deque));
    Py_XSETREF(g_deque_append, app);
    Py_XSETREF(g_deque_popleft, pop);
    PyObject *rd = PyDict_GetItemWithError(ChanType.tp_dict, s__try_recv);
    PyObject *sd = rd == NULL ? NULL : PyDict_GetItemWithError(ChanType.tp_dict, s__try_send);
    if (sd == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "ChanCore lacks its own _try_recv/_try_send");
        }
        return NULL;
    }
    Py_XSETREF(g_try_recv_descr, Py_NewRef(rd));
    Py_XSETREF(g_try_send_descr, Py_NewRef(sd));
    Py_XSETREF(g_block, Py_NewRef(block));
    Py_XSETREF(g_closed_sentinel, Py_NewRef(closed));
    Py_XSETREF(g_unlocked, Py_NewRef(unlocked));
    Py_XSETREF(g_closed_error, Py_NewRef(error));
    Py_XSETREF(g_waitq_cls, Py_NewRef(waitq));
    Py_XSETREF(g_owed, Py_NewRef(owed));
    Py_RETURN_NONE;
}

static PyObject *
setup_sched(PyObject *module, PyObject *args)
{
    PyObject *barrier, *shared;
    Py_ssize_t budget;
    if (!PyArg_ParseTuple(args, "OnO:setup_sched", &barrier, &budget, &shared)) {
        return NULL;
    }
    Py_XSETREF(g_barrier, Py_NewRef(barrier));
    if (!PyObject_TypeCheck(shared, &SharedType)) {
        PyErr_SetString(PyExc_TypeError, "setup_sched: shared must be a SharedCore");
        return NULL;
    }
    Py_XSETREF(g_shared, (Shared *)Py_NewRef(shared));
    g_drain_budget = budget;
    Py_RETURN_NONE;
}

static PyObject *
setup_drive(PyObject *module, PyObject *args)
{
    PyObject *globals, *kinds[4];
    if (!PyArg_ParseTuple(args, "O!OOOO:setup_drive", &PyDict_Type, &globals, &kinds[0],
                          &kinds[1], &kinds[2], &kinds[3])) {
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        Py_XSETREF(g_kinds[i], Py_NewRef(kinds[i]));
    }
    Py_XSETREF(g_drive_globals, Py_NewRef(globals));
    Py_RETURN_NONE;
}

static PyObject *
setup(PyObject *module, PyObject *args)
{
    PyObject *budget, *thrown, *cancelled_error, *get_running_loop, *pending, *done;
    PyObject *cancelled, *park_shared;
    if (!PyArg_ParseTuple(args, "OOOOOOOO:setup", &budget, &thrown, &cancelled_error,
                          &get_running_loop, &pending, &done, &cancelled, &park_shared)) {
        return NULL;
    }
    Py_XSETREF(g_park_shared, Py_NewRef(park_shared));
    Py_XSETREF(g_get_running_loop, Py_NewRef(get_running_loop));
    Py_XSETREF(g_done, Py_NewRef(done));
    if (!PyObject_TypeCheck(budget, &BudgetType)) {
        PyErr_SetString(PyExc_TypeError, "setup: budget must be a BudgetCore");
        return NULL;
    }
    Py_XSETREF(g_budget, (Budget *)Py_NewRef(budget));
    Py_XSETREF(g_thrown, Py_NewRef(thrown));
    Py_XSETREF(g_cancelled_error, Py_NewRef(cancelled_error));
    Py_XSETREF(g_pending, Py_NewRef(pending));
    Py_XSETREF(g_cancelled, Py_NewRef(cancelled));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"setup_waiter_class", setup_waiter_class, METH_O,
     "setup_waiter_class(Waiter): csp._waiter calls it once (WaitQ completes its "
     "instances directly)."},
    {"setup_chan", setup_chan, METH_VARARGS,
     "setup_chan(BLOCK, CLOSED, _UNLOCKED, ClosedChannelError, WaitQ, owed, deque): "
     "csp._chan calls it once."},
    {"setup_sync", setup_sync, METH_VARARGS,
     "setup_sync(READY, pure lock): csp._sync calls it once."},
    {"setup_select", setup_select, METH_VARARGS,
     "setup_select(select, _wait_parked, random, _PERMS, _order): csp._select calls it "
     "once."},
    {"select", (PyCFunction)(void (*)(void))csp_select, METH_FASTCALL | METH_KEYWORDS,
     "select(*cases, default=False, priority=False)\n"
     "--\n"
     "\n"
     "Wait until one of several channel operations can proceed, and do exactly that one.\n"
     "\n"
     "Go: ``select``. Each case is ``ch.recv`` (the value is the received value, None if\n"
     "closed), ``ch.recv_ok`` (the value is ``(value, ok)``) or ``(ch.send, x)`` (the\n"
     "value is None). Returns ``(index, value)`` of the case that took effect.\n"
     "\n"
     "* Several cases ready: one is chosen uniformly at random; with ``priority=True``\n"
     "  the first of them in argument order (tokio's ``biased;``; parked selects are\n"
     "  unaffected: the first case to be completed wins).\n"
     "* None ready and ``default=True``: returns ``(-1, None)`` at once.\n"
     "* None ready otherwise: blocks until exactly one case completes. A send case on a\n"
     "  closed channel is ready and raises :class:`ClosedChannelError` when chosen.\n"
     "* ``csp.nil`` cases are never chosen; ``await select()`` blocks forever.\n"
     "* Cancelled while blocked: no case took effect.\n"
     "\n"
     "Example::\n"
     "\n"
     "    i, v = await csp.select(jobs.recv, (results.send, r), ctx.done().recv)\n"
     "    if i == 0:\n"
     "        ...  # v is the job received\n"
     "    elif i == 2:\n"
     "        return  # the context is done"},
    {"setup_sched", setup_sched, METH_VARARGS,
     "setup_sched(BARRIER, DRAIN_BUDGET, shared): csp._sched calls it once."},
    {"setup_drive", setup_drive, METH_VARARGS,
     "setup_drive(globals, RESUME, YIELD, RETURN, RAISE): csp._drive calls it once."},
    {"setup", setup, METH_VARARGS,
     "setup(budget, thrown, cancelled_error, get_running_loop, PENDING, DONE, CANCELLED, "
     "park_in_shared_mode): "
     "what the core calls "
     "back (csp._waiter calls it once, at import)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "csp._speedups",
    .m_doc = PyDoc_STR("csp's compiled core (see csp/_speedups.c and docs/compiled.md)."),
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
#define INTERN(var, text) \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_full, "full");
    INTERN(s_left, "left");
    INTERN(s_on, "on");
    INTERN(s_append, "append");
    INTERN(s_popleft, "popleft");
    INTERN(s_call_soon, "call_soon");
    INTERN(s_drain, "drain");
    INTERN(s_run, "run");
    INTERN(s__reschedule, "_reschedule");
    INTERN(s__wake_from_thread, "_wake_from_thread");
    INTERN(s_call_exception_handler, "call_exception_handler");
    INTERN(s_message, "message");
    INTERN(s_exception, "exception");
    INTERN(s__current_tasks, "_current_tasks");
    INTERN(s_Waiter, "Waiter");
    INTERN(s__to_task, "_to_task");
    INTERN(s__publish, "_publish");
    INTERN(s_push_yield, "push_yield");
    INTERN(s__parked_with_cancel_pending, "_parked_with_cancel_pending");
    INTERN(s_withdraw, "withdraw");
    INTERN(s_sched, "sched");
    INTERN(s_draining, "draining");
    INTERN(s_loop, "loop");
    INTERN(s_is_closed, "is_closed");
    INTERN(s_wake, "wake");
    INTERN(s_complete, "complete");
    INTERN(s_q, "q");
    INTERN(s_prev, "prev");
    INTERN(s_next, "next");
    INTERN(s_value, "value");
    INTERN(s_take, "take");
    INTERN(s_give, "give");
    INTERN(s_head, "head");
    INTERN(s__locked, "_locked");
    INTERN(s_default, "default");
    INTERN(s_sync_mutex_lock, "sync.Mutex.Lock");
    INTERN(s_priority, "priority");
    INTERN(s__try_recv, "_try_recv");
    INTERN(s__try_send, "_try_send");
    INTERN(s_push, "push");
    INTERN(s_chan_receive, "chan receive");
    INTERN(s_chan_send, "chan send");
#undef INTERN
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&SchedType) < 0
            || PyType_Ready(&GorType) < 0 || PyType_Ready(&QType) < 0
            || PyType_Ready(&ChanType) < 0 || PyType_Ready(&OpType) < 0
            || PyType_Ready(&BudgetType) < 0 || PyType_Ready(&SharedType) < 0
            || PyType_Ready(&MutexType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "WaiterCore", (PyObject *)&CoreType) < 0
            || PyModule_AddObjectRef(m, "SchedulerCore", (PyObject *)&SchedType) < 0
            || PyModule_AddObjectRef(m, "GoroutineCore", (PyObject *)&GorType) < 0
            || PyModule_AddObjectRef(m, "WaitQCore", (PyObject *)&QType) < 0
            || PyModule_AddObjectRef(m, "ChanCore", (PyObject *)&ChanType) < 0
            || PyModule_AddObjectRef(m, "ChanOp", (PyObject *)&OpType) < 0
            || PyModule_AddObjectRef(m, "BudgetCore", (PyObject *)&BudgetType) < 0
            || PyModule_AddObjectRef(m, "SharedCore", (PyObject *)&SharedType) < 0
            || PyModule_AddObjectRef(m, "MutexCore", (PyObject *)&MutexType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
