//! canh-nsm (under construction)
