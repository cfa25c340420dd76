package flows

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	cesql "github.com/cloudevents/sdk-go/sql/v2"
	cesqlparser "github.com/cloudevents/sdk-go/sql/v2/parser"
	"github.com/cloudevents/sdk-go/sql/v2/runtime"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// CESQL matches the events for which the CloudEvents SQL expression expr
// is true, evaluated by github.com/cloudevents/sdk-go/sql/v2 (the engine
// Knative links). expr is parsed once, here; [Broker.Validate] reports an
// expression that does not parse (the parser's error, or its panic, which
// is recovered), an empty one, one that calls an unknown function, and one
// whose result cannot be a Boolean (such as "type" or "1 + 1": Knative
// accepts those and then panics on every event it evaluates).
//
// As in Knative, an error while evaluating expr on an event means no
// match, and never a failed delivery: a missing attribute (`myext = 'x'`
// on an event without myext; `NOT EXISTS myext OR myext = 'x'` is the way
// to allow it), a failed cast (`'abc'` to Integer), a division by zero.
// AND and OR stop at the first operand that decides, left to right. The
// expression sees extensions as strings, as Knative's does after its HTTP
// hops, and not knativebrokerttl.
func CESQL(expr string) Filter {
	return Filter{&filterNode{kind: kindCESQL, sql: parseCESQL(expr)}}
}

type cesqlFilter struct {
	expr string
	ex   cesql.Expression
	err  error // why it cannot be used
}

func parseCESQL(expr string) (f *cesqlFilter) {
	f = &cesqlFilter{expr: expr}
	if strings.TrimSpace(expr) == "" {
		f.err = errors.New("an empty expression")
		return f
	}
	defer func() {
		// The parser panics on some malformed input, such as "type = 'a' AND".
		if r := recover(); r != nil {
			f.ex, f.err = nil, fmt.Errorf("expression %q does not parse (the CESQL parser gave up: %v)", expr, r)
		}
	}()
	ex, err := cesqlparser.Parse(expr)
	if err != nil {
		f.err = fmt.Errorf("expression %q does not parse: %w", expr, err)
		return f
	}
	if ex == nil {
		f.err = fmt.Errorf("expression %q does not parse", expr)
		return f
	}
	if t, err := staticType(reflect.ValueOf(ex)); err != nil {
		f.err = fmt.Errorf("expression %q: %w", expr, err)
		return f
	} else if t != cesql.BooleanType && t != cesql.AnyType {
		f.err = fmt.Errorf("expression %q is %s, not Boolean: it would match no event", expr, t)
		return f
	}
	f.ex = ex
	return f
}

// staticType infers the type of a parsed expression from the node types of
// sql/v2 v2.16.2, and finds calls of unknown functions. A node it does not
// know is AnyType: the check then relies on the run-time rule (a result
// that is not a Boolean is no match).
func staticType(v reflect.Value) (cesql.Type, error) {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return cesql.AnyType, nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return cesql.AnyType, nil
	}
	// Walk the children first, for unknown functions anywhere.
	if err := checkChildren(v); err != nil {
		return cesql.AnyType, err
	}
	switch v.Type().Name() {
	case "equalExpression", "existsExpression", "inExpression", "integerComparisonExpression",
		"likeExpression", "logicExpression", "notExpression":
		return cesql.BooleanType, nil
	case "mathExpression", "negateExpression":
		return cesql.IntegerType, nil
	case "identifierExpression":
		// Every attribute reaches the expression as a string (see CESQL).
		return cesql.StringType, nil
	case "literalExpression":
		if f := v.FieldByName("value"); f.IsValid() {
			switch f.Elem().Kind() {
			case reflect.Bool:
				return cesql.BooleanType, nil
			case reflect.Int32:
				return cesql.IntegerType, nil
			case reflect.String:
				return cesql.StringType, nil
			}
		}
	case "functionInvocationExpression":
		name, args := v.FieldByName("name"), v.FieldByName("argumentsExpression")
		if name.Kind() == reflect.String && args.Kind() == reflect.Slice {
			fn := runtime.ResolveFunction(name.String(), args.Len())
			if fn == nil {
				return cesql.AnyType, fmt.Errorf("unknown function %s with %d argument(s)", name.String(), args.Len())
			}
			return fn.ReturnType(), nil
		}
	}
	return cesql.AnyType, nil
}

var expressionType = reflect.TypeFor[cesql.Expression]()

func checkChildren(v reflect.Value) error {
	for i := range v.NumField() {
		f := v.Field(i)
		switch {
		case f.Type() == expressionType:
			if _, err := staticType(f); err != nil {
				return err
			}
		case f.Kind() == reflect.Slice && f.Type().Elem() == expressionType:
			for j := range f.Len() {
				if _, err := staticType(f.Index(j)); err != nil {
					return err
				}
			}
		case f.Kind() == reflect.Struct:
			if err := checkChildren(f); err != nil {
				return err
			}
		}
	}
	return nil
}

// matches evaluates the expression on v's event, seen as Knative's filter
// sees it: without knativebrokerttl, with every extension as a string.
// The view is made once per entry, for all the CESQL filters.
func (f *cesqlFilter) matches(v *filterEvent) (ok bool) {
	if f.ex == nil {
		return false
	}
	if v.sql == nil {
		v.sql = cesqlView(v.e)
	}
	defer func() {
		// Knative's engine is not hardened against every input: a panic in
		// it is no match, not a failed delivery.
		if r := recover(); r != nil {
			ok = false
		}
	}()
	res, err := f.ex.Evaluate(*v.sql)
	if err != nil {
		return false
	}
	b, isBool := res.(bool)
	return isBool && b
}

// cesqlView returns e as CESQL expressions see it, in one allocation.
func cesqlView(e *event.Event) *event.Event {
	w := &struct {
		e  event.Event
		ec event.EventContextV1 // the attributes, if their extensions are converted
		c  cesqlContext
	}{e: *e}
	if ec, isV1 := e.Context.(*event.EventContextV1); isV1 && ec != nil {
		if needsView(ec.Extensions) {
			w.ec = *ec
			w.ec.Extensions = make(map[string]any, len(ec.Extensions))
			for k, v := range ec.Extensions {
				if k == ExtensionBrokerTTL {
					continue
				}
				if s, err := types.Format(v); err == nil {
					w.ec.Extensions[k] = s
				}
			}
			ec = &w.ec
		}
		w.c.EventContextV1 = ec
		w.e.Context = &w.c
	} else if e.Context != nil {
		c := e.Context.Clone()
		for k, v := range c.GetExtensions() {
			if k == ExtensionBrokerTTL {
				c.SetExtension(k, nil)
			} else if s, err := types.Format(v); err == nil {
				c.SetExtension(k, s)
			}
		}
		w.e.Context = c
	}
	return &w.e
}

// cesqlContext is the attributes of a 1.0 event as CESQL expressions read
// them, at less cost than the SDK's: the engine reads each extension
// through GetExtensions, which copies the map every time (this one hands
// the map itself, which the engine only reads), and the source through
// GetSource, which formats it every time (this one once).
type cesqlContext struct {
	*event.EventContextV1
	source     string
	haveSource bool
}

func (c *cesqlContext) GetExtensions() map[string]any {
	if len(c.Extensions) == 0 {
		return nil
	}
	return c.Extensions
}

func (c *cesqlContext) GetSource() string {
	if !c.haveSource {
		c.source, c.haveSource = c.EventContextV1.GetSource(), true
	}
	return c.source
}

// needsView reports whether the extensions hold knativebrokerttl or a value
// that is not a string.
func needsView(exts map[string]any) bool {
	for k, v := range exts {
		if k == ExtensionBrokerTTL {
			return true
		}
		if _, ok := v.(string); !ok {
			return true
		}
	}
	return false
}
