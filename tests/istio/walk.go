package oracle

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// Visit calls fn on every message reachable from m, children before their parent, looking
// inside google.protobuf.Any values: an Any's content is visited, packed again (so fn may
// change it), and then fn sees the Any itself. An Any of a type this binary does not know
// is passed to fn without being entered (see IsKnownType).
func Visit(m proto.Message, fn func(proto.Message) error) error {
	return visit(m.ProtoReflect(), fn)
}

// IsKnownType reports whether this binary can decode an Any of that type URL.
func IsKnownType(typeURL string) bool {
	_, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	return err == nil
}

func visit(m protoreflect.Message, fn func(proto.Message) error) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		if !IsKnownType(a.TypeUrl) {
			return fn(a)
		}
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %v", a.TypeUrl, err)
		}
		if err := visit(inner.ProtoReflect(), fn); err != nil {
			return err
		}
		value, err := proto.MarshalOptions{Deterministic: true}.Marshal(inner)
		if err != nil {
			return fmt.Errorf("%s: %v", a.TypeUrl, err)
		}
		a.Value = value
		return fn(a)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			list := v.List()
			for i := 0; i < list.Len() && err == nil; i++ {
				err = visit(list.Get(i).Message(), fn)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = visit(mv.Message(), fn)
				return err == nil
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = visit(v.Message(), fn)
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	return fn(m.Interface())
}

// TypeURLs lists the type URL of every Any reachable from m, and the type each TypedStruct
// among them names.
func TypeURLs(m proto.Message) []string {
	var urls []string
	_ = Visit(m, func(msg proto.Message) error {
		if a, ok := msg.(*anypb.Any); ok {
			urls = append(urls, a.TypeUrl)
			if inner := EffectiveTypeURL(a); inner != a.TypeUrl {
				urls = append(urls, inner)
			}
		}
		return nil
	})
	return urls
}
