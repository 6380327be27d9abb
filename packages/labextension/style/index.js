import './base.css';
import './readonly.css';
