import './readonly.css';
