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

/* set once by setup(), from csp/_waiter.py */
static PyObject *g_budget;          /* csp._threads.budget */
static PyObject *g_thrown;          /* csp._waiter._thrown(w, exc) -> re-raise? */
static PyObject *g_cancelled_error; /* csp._waiter._cancelled_error(msg) */
static PyObject *g_pending;         /* csp._waiter.PENDING */
static PyObject *g_cancelled;       /* csp._waiter.CANCELLED */
static PyObject *s_full, *s_left;

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
    tp->tp_free((PyObject *)self);
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
    if (self->step == 0 && self->state == g_pending) {
        /* a park: the cooperative budget starts again (budget.left = budget.full) */
        PyObject *full = PyObject_GetAttr(g_budget, s_full);
        if (full == NULL) {
            return NULL;
        }
        int rc = PyObject_SetAttr(g_budget, s_left, full);
        Py_DECREF(full);
        if (rc < 0) {
            return NULL;
        }
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

static PyObject *
core_throw(Core *self, PyObject *const *args, Py_ssize_t nargs)
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
        return NULL;
    }
    Py_DECREF(exc); /* the outcome stands (the cancellation is owed) */
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

static PyMethodDef core_methods[] = {
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

static PyObject *
setup(PyObject *module, PyObject *args)
{
    PyObject *budget, *thrown, *cancelled_error, *pending, *cancelled;
    if (!PyArg_ParseTuple(args, "OOOOO:setup", &budget, &thrown, &cancelled_error,
                          &pending, &cancelled)) {
        return NULL;
    }
    Py_XSETREF(g_budget, Py_NewRef(budget));
    Py_XSETREF(g_thrown, Py_NewRef(thrown));
    Py_XSETREF(g_cancelled_error, Py_NewRef(cancelled_error));
    Py_XSETREF(g_pending, Py_NewRef(pending));
    Py_XSETREF(g_cancelled, Py_NewRef(cancelled));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"setup", setup, METH_VARARGS,
     "setup(budget, thrown, cancelled_error, PENDING, CANCELLED): what the core calls "
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
    s_full = PyUnicode_InternFromString("full");
    s_left = PyUnicode_InternFromString("left");
    if (s_full == NULL || s_left == NULL || PyType_Ready(&CoreType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "WaiterCore", (PyObject *)&CoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
